"""tfdml: deep metric learning for TensorFlow and Keras 3.

Example:
    >>> import tfdml
    >>> loss = tfdml.losses.MultiSimilarityLoss()
"""

__version__ = "0.1.0"

from tfdml import config, data, errors, evaluation, export, losses, models  # noqa: E402

__all__ = ["config", "data", "errors", "evaluation", "export", "losses", "models", "__version__"]
