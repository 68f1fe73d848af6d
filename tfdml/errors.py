"""User-facing errors.

A :class:`TfdmlError` carries a message that says what is wrong and what would be right; the
CLI prints it without a traceback. Anything else escaping the package is a bug.

Example:
    >>> from tfdml.errors import DataError
    >>> raise DataError("no images under /data/cub; expected CUB_200_2011/images.txt")
    Traceback (most recent call last):
    ...
    tfdml.errors.DataError: no images under /data/cub; expected CUB_200_2011/images.txt
"""


class TfdmlError(Exception):
    """A user-facing error with a message that says what is wrong and what would be right."""


class ConfigError(TfdmlError):
    """An option or configuration value is invalid."""


class DataError(TfdmlError):
    """A dataset is missing, malformed or cannot be read."""


class ArtifactError(TfdmlError):
    """A run directory or an exported SavedModel is missing, incomplete, or of another kind than expected."""


NON_FINITE_HINT = ("Lower optimizer.learning_rate, set optimizer.clipnorm (e.g. 10), or check the loss arguments "
                   "and the input images.")
