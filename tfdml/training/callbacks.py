"""Callbacks that make a run safe to interrupt and honest about failure."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import keras

from tfdml.errors import NON_FINITE_HINT, ArtifactError, TfdmlError
from tfdml.evaluation.callback import RetrievalValidation
from tfdml.training.budget import TimeBudget, budget_state


class NaNGuard(keras.callbacks.Callback):
    """Stop with a clear error (not a silent NaN model) when the training loss stops being finite."""

    def __init__(self, checkpoint: Path | None = None, hint: str = NON_FINITE_HINT) -> None:
        super().__init__()
        self.checkpoint, self.hint = checkpoint, hint
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            hint = (f" The last good checkpoint is {self.checkpoint}."
                    if self.checkpoint is not None and self.checkpoint.is_file() else "")
            raise TfdmlError(
                f"the training loss became {float(loss)} at epoch {self.epoch + 1}, step {batch + 1}. "
                f"{self.hint}{hint}"
            )


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch: `last.keras` (weights and optimizer state), `best.weights.h5` when validation
    improved, `state.json` (epoch, best metric, time spent) and `manifest.json` (the set's fingerprints),
    written as one set so that an interruption at any moment leaves a consistent checkpoint to resume from."""

    def __init__(self, directory: str | Path, validation: RetrievalValidation, budget: TimeBudget) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.validation, self.budget = validation, budget

    @property
    def last_path(self) -> Path:
        return self.directory / "last.keras"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.weights.h5"

    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {
            "epoch": epoch + 1,
            "best_value": self.validation.best_value,
            "best_epoch": self.validation.best_epoch,
            **budget_state(self.budget),
            "validation": self.validation.history,
        }
        writers = {self.last_path: self.model.save,
                   self.state_path: lambda p: Path(p).write_text(json.dumps(state, indent=1))}
        if self.validation.best_epoch == epoch + 1:
            writers[self.best_path] = self.model.save_weights
        # Ctrl-C waits until the set is complete; every file is written in full under a temporary name
        # before any is renamed into place, so a kill (which cannot wait) has only the renames to hit,
        # and the manifest, renamed last, names the files of this epoch so that a mixed set is detected.
        with _interrupts_deferred():
            written = {path: _write_temporary(path, write) for path, write in writers.items()}
            fingerprints = {p.name: _fingerprint(written.get(p, p)) for p in (self.last_path, self.state_path,
                                                                            self.best_path) if p in written or p.is_file()}
            manifest = _write_temporary(self.manifest_path, lambda p: Path(p).write_text(
                json.dumps({"epoch": epoch + 1, "files": fingerprints}, indent=1)))
            for path, temporary in written.items():
                os.replace(temporary, path)
            os.replace(manifest, self.manifest_path)

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def check(self) -> dict:
        """The checkpoint's state after checking that its files are the set its manifest names.

        Raises an ArtifactError (one line: what is wrong, what to do) for a mixed, damaged or
        truncated set. A checkpoint without a manifest (an older tfdml) returns its state unchecked.
        """
        run_dir = self.directory.parent
        todo = (f"delete {run_dir} to start over (or train under another name=...); its best weights, if any, "
                f"are {self.best_path}")
        if self.manifest_path.is_file():
            try:
                manifest = json.loads(self.manifest_path.read_text())
                epoch, files = int(manifest["epoch"]), dict(manifest["files"])
            except (ValueError, KeyError, TypeError) as err:
                raise ArtifactError(f"{self.manifest_path} is damaged ({type(err).__name__}); {todo}") from None
            for name, expected in files.items():
                path = self.directory / name
                if not path.is_file():
                    raise ArtifactError(f"the checkpoint in {self.directory} is incomplete: {name} of epoch {epoch} "
                                        f"is missing; {todo}")
                if _fingerprint(path) != expected:
                    raise ArtifactError(
                        f"the checkpoint in {self.directory} is not one set: {name} is not the file of epoch {epoch} "
                        f"that {MANIFEST} names (the run was stopped while writing a checkpoint, or the file was "
                        f"damaged or replaced); {todo}")
        try:
            state = json.loads(self.state_path.read_text())
            for key in ("epoch", "best_value", "best_epoch"):
                float(state[key])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ArtifactError(f"{self.state_path} is damaged ({type(err).__name__}: {err}); {todo}") from None
        return state


MANIFEST = "manifest.json"


def _fingerprint(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _write_temporary(path: Path, write: Any) -> Path:
    """Write `path`'s new content to a temporary file beside it and return that file.

    The pid keeps two processes (which the run lock should prevent) from sharing a temporary file;
    the name keeps its suffix (Keras chooses the format by it).
    """
    tmp = path.with_name(f".tmp.{os.getpid()}.{path.name}")
    write(str(tmp))
    return tmp


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
