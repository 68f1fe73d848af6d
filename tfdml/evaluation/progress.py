"""Progress of tfdml's long phases (embedding, blockwise search, CCP pools) as a `keras.utils.Progbar`.

`verbose` follows Keras: 0 silent, 1 a progress bar, 2 one line when the phase ends; "auto" is 1 on
a terminal and 2 when stdout is not one, so a log piped to a file carries no control codes (Keras's
own bar redraws with `\\r` and colours even then).

Example:
    >>> resolve_verbose("auto") in (1, 2)
    True
    >>> sum(with_progress(range(3), verbose=0))
    3
"""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar, Union

Verbose = Union[int, str]  # 0, 1, 2 or "auto"
VERBOSE_CHOICES = (0, 1, 2, "auto")
T = TypeVar("T")


def resolve_verbose(verbose: Verbose) -> int:
    """0, 1 or 2: "auto" is 1 (a bar) when stdout is a terminal, 2 (one line) when it is not.

    Example:
        >>> resolve_verbose(2), resolve_verbose(0)
        (2, 0)
    """
    if verbose == "auto":
        isatty = getattr(sys.stdout, "isatty", None)
        return 1 if isatty is not None and isatty() else 2
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)


def with_progress(items: Iterable[T], verbose: Verbose, *, total: int | None = None,
                  unit_name: str = "batch") -> Iterator[T]:
    """Yield `items`, advancing a Progbar after each one has been processed (0: no bar).

    `total` None (unknown length) shows a count; the bar is finalised when the items run out.

    Example:
        >>> [x for x in with_progress([1, 2], verbose=0, total=2)]
        [1, 2]
    """
    level = resolve_verbose(verbose)
    if not level:
        yield from items
        return
    import keras  # here: the numpy-only search modules need not load Keras when silent

    bar = keras.utils.Progbar(total, verbose=level, unit_name=unit_name)
    count = 0
    for count, item in enumerate(items, start=1):
        yield item  # the caller works on it before the bar moves
        bar.update(count, finalize=False)
    if count:
        bar.target = count  # a known total now, so verbose=2 prints its line too
        bar.update(count, finalize=True)
