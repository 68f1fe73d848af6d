"""An OS file lock on a run directory, so that two `tfdml-train` of the same run cannot both write it.

Example (not run as a doctest: it writes a lock into runs/):
    >>> with RunLock("runs/emoji"):  # doctest: +SKIP
    ...     train()
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Any

from tfdml.errors import ArtifactError

LOCK_FILE = ".lock"  # in the run directory; holds the pid of the process that has it


class RunLock:
    """`fcntl.flock` on `RUN_DIR/.lock`, held while the `with` block runs; the kernel drops it when the
    process dies, so a killed run never leaves a stale lock. A second holder gets an ArtifactError
    naming the first one's pid."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._file: IO[str] | None = None

    def __enter__(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            raise ArtifactError(f"{self.run_dir} is in use by another tfdml-train (pid {holder}); wait for it to "
                                "finish or stop it, or train under another name=...") from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
