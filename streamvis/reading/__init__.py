"""Reading the world's text aloud: a text model (`model`: PP-OCR through rapidocr), text kept as objects
(`tracks`: read once, tracked by position, re-read when it changes) and where and when a stream looks (`reader`)."""
