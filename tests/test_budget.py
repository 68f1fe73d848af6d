"""The time budget, and the schedule fitted to it: real Keras fits whose epochs are slowed by a sleep."""

from __future__ import annotations

import json
import time
import types

import keras
import numpy as np
import pytest
from keras import ops

from tfdml.errors import ConfigError
from tfdml.models.optim import scaled_clone
from tfdml.training import run
from tfdml.training import budget as budget_module
from tfdml.training.budget import FitScheduleToBudget, TimeBudget, epochs_in_budget, set_schedule_length

from test_training import tiny_config


class Slow(keras.callbacks.Callback):
    """Makes every epoch last at least `seconds` (what a large model on a slow machine does); after the
    budget in the callback list, so that its clock (started at the epoch's beginning) counts the sleep."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def on_epoch_begin(self, epoch, logs=None):
        time.sleep(self.seconds)


@pytest.mark.parametrize("done, spent, epoch_s, budget, planned, expected", [
    (2, 90.0, 40.0, 600.0, 24, 14),   # the slow machine: 2 + 510 // 40
    (2, 40.0, 20.0, 600.0, 24, 24),   # everything fits: never longer than planned
    (5, 700.0, 40.0, 600.0, 24, 5),   # already over: never shorter than what is done
    (2, 10.0, 0.0, 600.0, 24, 24),    # an epoch measured as instant
])
def test_epochs_in_budget(done, spent, epoch_s, budget, planned, expected):
    assert epochs_in_budget(done, spent, epoch_s, budget, planned) == expected


def test_set_schedule_length_reaches_group_clones_and_keeps_the_warmup():
    cosine = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=90, warmup_target=1e-3, warmup_steps=10)
    main = keras.optimizers.Adam(learning_rate=cosine)
    group = scaled_clone(main, 10.0)  # a parameter group: its own (deserialised) schedule, scaled
    scaled = keras.optimizers.LossScaleOptimizer(scaled_clone(main, 100.0))
    set_schedule_length([main, group, scaled, keras.optimizers.SGD(0.1)], 40)  # a constant rate: untouched
    expected = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=30, warmup_target=1e-3, warmup_steps=10)
    for step in (0, 5, 10, 25, 40, 60):
        want = float(expected(step))
        assert float(main._learning_rate(step)) == pytest.approx(want, rel=1e-6, abs=1e-12)
        assert float(group._learning_rate(step)) == pytest.approx(10 * want, rel=1e-6, abs=1e-12)
        assert float(scaled.inner_optimizer._learning_rate(step)) == pytest.approx(100 * want, rel=1e-6, abs=1e-12)


def test_fitted_schedule_is_the_one_the_traced_step_applies():
    # loss = mean(w * 1): its gradient is 1 at every step, so plain SGD moves w by exactly the learning
    # rate of each step, and the final w is minus the sum of the rates the traced step really used.
    steps, planned = 4, 20
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    rate = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=planned * steps)
    model.compile(optimizer=keras.optimizers.SGD(rate), loss=lambda y, p: ops.mean(p))
    budget = TimeBudget(1.6)
    fit = FitScheduleToBudget(budget, planned, steps, log=lambda _: None)
    x = np.ones((steps * 8, 1), "float32")
    history = model.fit(x, x, batch_size=8, epochs=planned, verbose=0, callbacks=[budget, fit, Slow(0.2)])

    horizon, trained = budget.horizon, len(history.epoch)
    assert horizon is not None and 2 <= horizon < planned  # 0.2 s epochs: 1.6 s holds about 8
    # The run stops at the horizon, not at the planned epochs (or earlier, where the budget's own stop
    # fires first: on a loaded machine the retraced epoch can run long).
    assert trained == horizon or (trained < horizon and budget.spent_s >= budget.budget_s)
    old = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=planned * steps)
    new = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=horizon * steps)
    applied = sum(float(old(t)) for t in range(2 * steps)) + sum(float(new(t)) for t in range(2 * steps, trained * steps))
    assert float(model.get_weights()[0][0, 0]) == pytest.approx(-applied, rel=1e-5)
    assert float(new(horizon * steps)) == 0.0  # the rate decayed fully within the budget


class Clock(keras.callbacks.Callback):
    """The budget's clock, advanced by `seconds[epoch]` during each epoch: exact epoch times, no sleeping."""

    def __init__(self, seconds: list[float]) -> None:
        super().__init__()
        self.seconds, self.now = seconds, 0.0

    def __call__(self) -> float:
        return self.now

    def on_epoch_begin(self, epoch, logs=None):
        self.now += self.seconds[epoch]


@pytest.mark.parametrize("strict, epochs, spent", [(True, 5, 1.7), (False, 6, 2.0)])
def test_a_strict_budget_stops_before_the_epoch_that_would_pass_it(monkeypatch, strict, epochs, spent):
    clock = Clock([0.5] + [0.3] * 19)  # a first epoch that traces, then 0.3 s each
    monkeypatch.setattr(budget_module, "time", types.SimpleNamespace(monotonic=clock))
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    budget = TimeBudget(1.85, strict=strict)
    x = np.ones((8, 1), "float32")
    history = model.fit(x, x, epochs=20, verbose=0, callbacks=[budget, clock])
    # strict: after 1.7 s a sixth epoch (0.3 s) would pass 1.85 s; plain: the sixth is the one it runs out in
    assert len(history.epoch) == epochs and budget.spent_s == pytest.approx(spent)


def test_a_run_that_fits_its_budget_is_left_alone():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 12)), loss="mse")
    budget = TimeBudget(600.0)
    x = np.ones((8, 1), "float32")
    history = model.fit(x, x, epochs=3, verbose=0, callbacks=[budget, FitScheduleToBudget(budget, 3, 1, log=print)])
    assert budget.horizon is None and len(history.epoch) == 3


def test_training_run_fits_itself_to_the_budget_and_keeps_that_on_resume(tmp_path):
    lines = []
    config = tiny_config(tmp_path, "name=fit", "train.epochs=8", "train.time_budget_s=6",
                         "train.fit_schedule_to_budget=true", "export.saved_model=false")
    metrics = run(config, log=lines.append, callbacks=[Slow(1.0)])
    state = json.loads((tmp_path / "fit" / "checkpoints" / "state.json").read_text())
    horizon, trained = state["horizon"], len(metrics["validation"])
    assert 2 <= horizon < 8 and (trained == horizon or (trained < horizon and state["spent_s"] >= 6))
    assert any(f"now end at epoch {horizon}" in line for line in lines)
    optimizer = keras.models.load_model(tmp_path / "fit" / "checkpoints" / "last.keras").optimizer
    assert optimizer._learning_rate.decay_steps == horizon * 3  # train.steps_per_epoch=3, in the checkpoint too

    # Rerun with a larger budget: it trains to the horizon the run was fitted to and no further (without the
    # saved horizon it would train on to the 8 planned epochs, its schedule already spent).
    again = run(tiny_config(tmp_path, "name=fit", "train.epochs=8", "train.time_budget_s=1000",
                            "train.fit_schedule_to_budget=true", "export.saved_model=false"), log=lambda _: None)
    assert len(again["validation"]) == horizon


def test_fitting_without_a_budget_is_refused_when_the_config_loads(tmp_path):
    with pytest.raises(ConfigError, match="train.time_budget_s"):
        tiny_config(tmp_path, "train.fit_schedule_to_budget=true", "train.time_budget_s=null")
