"""Output: canonical bytes, and the output folder replaced atomically."""
