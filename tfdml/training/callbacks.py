"""Callbacks that make a run safe to interrupt and honest about failure."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import keras

from tfdml.errors import NON_FINITE_HINT, TfdmlError
from tfdml.evaluation.callback import RetrievalValidation


class NaNGuard(keras.callbacks.Callback):
    """Stop with a clear error (not a silent NaN model) when the training loss stops being finite."""

    def __init__(self, checkpoint: Path | None = None) -> None:
        super().__init__()
        self.checkpoint = checkpoint
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
                f"{NON_FINITE_HINT}{hint}"
            )


class TimeBudget(keras.callbacks.Callback):
    """Stop at the end of the epoch in which `budget_s` seconds of training (across resumes) ran out."""

    def __init__(self, budget_s: float | None, already_spent_s: float = 0.0) -> None:
        super().__init__()
        self.budget_s, self.spent_s = budget_s, already_spent_s
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.spent_s += time.monotonic() - self._start
        if self.budget_s is not None and self.spent_s >= self.budget_s:
            self.model.stop_training = True


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch: `last.keras` (weights and optimizer state), `best.weights.h5` when validation
    improved, and `state.json` (epoch, best metric, time spent), each written atomically so an
    interruption at any moment leaves a consistent checkpoint to resume from."""

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
        if self.validation.best_epoch == epoch + 1:
            _atomic(self.best_path, self.model.save_weights)
        _atomic(self.last_path, self.model.save)
        state = {
            "epoch": epoch + 1,
            "best_value": self.validation.best_value,
            "best_epoch": self.validation.best_epoch,
            "spent_s": self.budget.spent_s,
            "validation": self.validation.history,
        }
        _atomic(self.state_path, lambda p: Path(p).write_text(json.dumps(state, indent=1)))


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".tmp.{path.name}")
    write(str(tmp))
    os.replace(tmp, path)
