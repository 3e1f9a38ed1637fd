"""Finding moments by words: an image-text embedding model (`embedder`), an embedded vector index in one DuckDB
file (`index`), and what a run puts in it: each track's views and scene keyframes (`collect`)."""
