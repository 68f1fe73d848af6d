"""tfdml: deep metric learning for TensorFlow and Keras 3.

Submodules load on first use, so `import tfdml` is instant and the command line can configure
TensorFlow's logging before TensorFlow starts.

Example:
    >>> import tfdml
    >>> loss = tfdml.losses.MultiSimilarityLoss()
    >>> tfdml.Retriever.__name__
    'Retriever'
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("ccp", "config", "data", "distribute", "errors", "evaluation", "export", "losses", "mixing", "models",
               "retrieval", "training")
_EXPORTS = {"Retriever": "tfdml.retrieval", "SearchResults": "tfdml.retrieval"}
__all__ = [*_SUBMODULES, *_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"tfdml.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tfdml' has no attribute {name!r}")
