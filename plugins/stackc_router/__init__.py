"""stackc-router: the reference OpenAI-compatible, cache-aware router. Runs without the compiler."""

__version__ = "0.1.0"
