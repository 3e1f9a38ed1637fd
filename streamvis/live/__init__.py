"""Live mode: newest-frame-wins scheduling, per-stream statistics."""
