"""Where weights come from: named files in a models folder, the cache or a checked download (`registry`),
and transformers models by hub id or folder, on the chosen device and dtype (`hf`)."""
