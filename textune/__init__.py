"""textune: tune PyTorch Transformer language models on Ray clusters.

This package holds the few pieces every other package shares: the version,
the user-facing error type and the typed-config loader.
"""

__version__ = "0.1.0"
