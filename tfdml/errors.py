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


def non_finite_hint(learning_rate: float | None = None) -> str:
    """What to do about a NaN loss: overrides that a resumed run accepts (and applies), then the rest."""
    rate = f"optimizer.learning_rate={learning_rate / 10:g}" if learning_rate else "a lower optimizer.learning_rate"
    return (f"Lower optimizer.learning_rate (rerun the same command with {rate}) or set optimizer.clipnorm=10: "
            "a rerun with either resumes from the last checkpoint; otherwise check the loss arguments and the "
            "input images.")


NON_FINITE_HINT = non_finite_hint()
