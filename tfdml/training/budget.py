"""A training-time budget, and a learning-rate schedule that ends with it.

`train.time_budget_s` stops a run after the epoch in which its seconds ran out (with
`train.time_budget_strict`, after the last epoch that fits at the pace of the one before). A cosine schedule
planned for `train.epochs` is then cut part-way, at a rate still far from its end, and how far
depends on the machine (the pretrained emoji config fits 24 epochs in 600 s on one 2-core machine
and 14 on another). With `train.fit_schedule_to_budget` the run measures its pace and shortens
itself, schedule included, to the epochs that fit, so the rate decays fully on any machine.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import keras

from tfdml.models.optim import model_optimizers


class TimeBudget(keras.callbacks.Callback):
    """Stop at the end of the epoch in which `budget_s` seconds of training (across resumes) ran out,
    or, `strict`, at the end of the last epoch that fits: when another at this epoch's pace would not.

    `spent_s` and `horizon` (the epochs `FitScheduleToBudget` shortened the run to, or None) are the
    state a checkpoint keeps; `last_epoch_s` is the duration of the latest epoch of this process.

    Example:
        >>> budget = TimeBudget(100.0, already_spent_s=55.0, strict=True)
        >>> budget.should_stop(epoch_s=50.0), TimeBudget(100.0, 55.0).should_stop(epoch_s=50.0)
        (True, False)
    """

    def __init__(self, budget_s: float | None, already_spent_s: float = 0.0, strict: bool = False) -> None:
        super().__init__()
        self.budget_s, self.spent_s, self.strict = budget_s, already_spent_s, strict
        self.horizon: int | None = None
        self.last_epoch_s = 0.0
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.last_epoch_s = time.monotonic() - self._start
        self.spent_s += self.last_epoch_s
        if self.should_stop(self.last_epoch_s):
            self.model.stop_training = True

    def should_stop(self, epoch_s: float) -> bool:
        """Whether training stops after an epoch that took `epoch_s` (the budget is spent, or, strict, the
        next epoch at that pace would pass it)."""
        if self.budget_s is None:
            return False
        return self.spent_s >= self.budget_s or (self.strict and self.spent_s + epoch_s > self.budget_s)


def epochs_in_budget(done: int, spent_s: float, epoch_s: float, budget_s: float, planned: int) -> int:
    """The epochs a run planned for `planned` can finish within `budget_s`: the `done` ones (which took
    `spent_s`) and as many more of `epoch_s` each as the rest of the budget holds, within [done, planned].

    Example:
        >>> epochs_in_budget(done=2, spent_s=90.0, epoch_s=40.0, budget_s=600.0, planned=24)
        14
        >>> epochs_in_budget(done=2, spent_s=40.0, epoch_s=20.0, budget_s=600.0, planned=24)
        24
    """
    more = int((budget_s - spent_s) // epoch_s) if epoch_s > 0 else planned
    return max(done, min(planned, done + max(0, more)))


def set_schedule_length(optimizers: list, total_steps: int) -> None:
    """Make every cosine schedule among `optimizers`' learning rates end at `total_steps` (its warm-up
    kept). The traced training step has the old length baked in: retrace it afterwards."""
    for optimizer in optimizers:
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer
        schedule = optimizer._learning_rate  # the schedule itself (`learning_rate` gives its current value)
        schedule = getattr(schedule, "schedule", schedule)  # a parameter group's ScaledSchedule wraps it
        if isinstance(schedule, keras.optimizers.schedules.CosineDecay):
            schedule.decay_steps = max(1, total_steps - (schedule.warmup_steps or 0))


class FitScheduleToBudget(keras.callbacks.Callback):
    """After a run's second epoch of full training (the first includes tracing; head warm-up epochs
    are faster), shorten it to the epochs that fit in `budget.budget_s` at that epoch's pace, cosine
    schedule included; stop there.

    Decided once per run: the horizon is kept in `budget.horizon`, which the checkpoint saves, so a
    resumed run keeps the schedule it had. A run whose planned epochs fit is left as it is.

    Example (not run as a doctest: it needs a compiled model and a training dataset):
        >>> budget = TimeBudget(600)  # doctest: +SKIP
        >>> model.fit(train_ds, epochs=24, callbacks=[budget, FitScheduleToBudget(budget, 24, len(train_ds))])  # doctest: +SKIP
    """

    def __init__(self, budget: TimeBudget, planned_epochs: int, steps_per_epoch: int, warmup_epochs: int = 0,
                 log: Callable[[str], None] = print) -> None:
        super().__init__()
        self.budget, self.planned, self.steps, self.log = budget, int(planned_epochs), int(steps_per_epoch), log
        self.warmup_epochs = int(warmup_epochs)
        self._epochs_here = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._epochs_here += 1
        budget = self.budget
        settled = self._epochs_here >= 2 and epoch >= self.warmup_epochs + 1  # a traced, full-network epoch
        if budget.horizon is None and settled and budget.budget_s is not None:
            fits = epochs_in_budget(epoch + 1, budget.spent_s, budget.last_epoch_s, budget.budget_s, self.planned)
            if fits < self.planned:
                budget.horizon = fits
                set_schedule_length(model_optimizers(self.model), fits * self.steps)
                self.model.make_train_function(force=True)  # the traced step holds the old schedule length
                self.log(f"time budget: epoch {epoch + 1} took {budget.last_epoch_s:.0f} s, so the "
                         f"{budget.budget_s:g} s budget holds {fits} of the {self.planned} planned epochs: "
                         f"the run and its learning-rate schedule now end at epoch {fits}")
        if budget.horizon is not None and epoch + 1 >= budget.horizon:
            self.model.stop_training = True


def apply_horizon(model: keras.Model, budget: TimeBudget, steps_per_epoch: int, planned_epochs: int) -> int:
    """A resumed run's epochs: the horizon its checkpoint kept (its schedules set to it), else `planned_epochs`."""
    if budget.horizon is None:
        return planned_epochs
    set_schedule_length(model_optimizers(model), budget.horizon * steps_per_epoch)
    return budget.horizon


def budget_state(budget: TimeBudget) -> dict[str, Any]:
    """The budget's part of a checkpoint's state."""
    return {"spent_s": budget.spent_s, **({"horizon": budget.horizon} if budget.horizon is not None else {})}
