"""Dataset readers, looked up by name; each returns a :class:`~tfdml.data.table.DatasetTable`.

Example:
    >>> from tfdml.data.readers import READERS, read_dataset
    >>> "emoji" in READERS
    True
    >>> read_dataset("nope")
    Traceback (most recent call last):
    ...
    tfdml.errors.DataError: unknown dataset 'nope'; known datasets: cars, csv, cub, emoji, folder, inshop, sop
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tfdml.data.table import DatasetTable
from tfdml.errors import DataError

Reader = Callable[..., DatasetTable]
READERS: dict[str, Reader] = {}


def register_reader(name: str) -> Callable[[Reader], Reader]:
    """Decorator that registers a reader under ``name`` (lower case)."""

    def decorate(reader: Reader) -> Reader:
        key = name.lower()
        if key in READERS and READERS[key] is not reader:
            raise ValueError(f"a reader named '{key}' is already registered: {READERS[key]!r}")
        READERS[key] = reader
        return reader

    return decorate


def read_dataset(name: str, **kwargs: Any) -> DatasetTable:
    """Read dataset ``name`` with the registered reader, passing ``kwargs`` through."""
    reader = READERS.get(name.lower())
    if reader is None:
        raise DataError(f"unknown dataset '{name}'; known datasets: {', '.join(sorted(READERS))}")
    return reader(**kwargs)


# Imported last, for their registration side effect.
from tfdml.data.readers import cars as _cars  # noqa: E402,F401
from tfdml.data.readers import cub as _cub  # noqa: E402,F401
from tfdml.data.readers import emoji as _emoji  # noqa: E402,F401
from tfdml.data.readers import folder as _folder  # noqa: E402,F401
from tfdml.data.readers import inshop as _inshop  # noqa: E402,F401
from tfdml.data.readers import sop as _sop  # noqa: E402,F401
