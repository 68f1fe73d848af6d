"""What the tfdml commands share: the argument parser's layout and one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable


def make_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """An argument parser whose description is the first line of `doc` and whose epilog is all of it."""
    return argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)


def run_command(prog: str, body: Callable[[], None]) -> int:
    """Run `body`; a TfdmlError becomes `PROG: error: MESSAGE` on stderr and exit code 2, Ctrl-C code 130."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfdml.errors import TfdmlError

    try:
        body()
    except TfdmlError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


def check_output_path(path: str | os.PathLike, option: str, directory: bool = False) -> Path:
    """Fail now, in one line, if `path` (a file, or a `directory`) cannot be written: before the work, not after.

    Creates the missing parent folders (the command would create them anyway).
    """
    from tfdml.errors import ConfigError

    path = Path(path).expanduser()
    folder = path if directory else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{option} {path}: cannot create the folder {folder} ({err.strerror or err})") from None
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: the folder {folder} is not writable")
    if not directory and path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name")
    return path
