from streamvis.cli import main

main()
