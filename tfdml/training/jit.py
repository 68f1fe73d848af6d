"""`train.jit_compile: auto`: time the real training step with and without XLA, keep the faster.

Whether XLA helps depends on the model and the machine: on CPU it makes depthwise convolutions
(MobileNet, EfficientNet) about 11x slower, while it speeds up plain convolutions on some CPUs and
slows them on others. So a run measures instead of guessing. The timing steps train on real batches,
so every variable (weights, optimizer slots, random-generator states) is restored afterwards: the run
then starts exactly as it would have without the measurement.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from tfdml.models.optim import model_optimizers


MARGIN = 0.95  # XLA is kept only when its step is at least 5% faster


def choose_jit_compile(model: keras.Model, dataset: tf.data.Dataset, steps: int = 3,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Set `model.jit_compile` to the faster of False and True (the median of `steps` batches of
    `dataset`, after one step each that traces and compiles and one untimed warm-up step; XLA stops
    early when its first step is over twice as slow, and is kept only when at least 5% faster), keep
    that traced step for `fit`, and return the figures.

    Example (not run as a doctest: it needs a model and a training dataset, and times training steps):
        >>> report = choose_jit_compile(model, train_ds)  # doctest: +SKIP
        >>> report["chosen"], report["ms_per_step"]  # doctest: +SKIP
        (False, {'xla': 2104.2, 'no_xla': 190.5})
    """
    saved = _snapshot(model)
    functions, ms, compile_s = {}, {}, {}
    try:
        for jit in (False, True):
            model.jit_compile = jit
            model.make_train_function(force=True)
            batches = iter(model.distribute_strategy.experimental_distribute_dataset(dataset.take(steps + 2)))
            start = time.perf_counter()
            _sync(model.train_function(batches))  # traces (and with XLA compiles)
            compile_s[jit] = time.perf_counter() - start
            _sync(model.train_function(batches))  # untimed: the first steps after a trace still warm up kernels
            times = []
            for _ in range(steps):
                start = time.perf_counter()
                _sync(model.train_function(batches))
                times.append(time.perf_counter() - start)
                if jit and times[-1] > 2 * ms[False] / 1000:  # clearly slower: no need to keep paying
                    break
            ms[jit] = 1000 * float(np.median(times))
            functions[jit] = model.train_function
    finally:
        _restore(model, saved)
        model.reset_metrics()
    chosen = ms[True] < MARGIN * ms[False]  # a near tie is noise: keep the plain step
    model.jit_compile = chosen
    model.train_function = functions[chosen]  # fit reuses it: no second trace or compile
    log(f"jit_compile auto: {ms[False]:.0f} ms/step without XLA, {ms[True]:.0f} ms/step with XLA "
        f"(compiled in {compile_s[True]:.0f} s) -> {'XLA' if chosen else 'no XLA'}")
    return {"chosen": chosen, "ms_per_step": {"no_xla": round(ms[False], 1), "xla": round(ms[True], 1)},
            "xla_compile_s": round(compile_s[True], 1)}


def _sync(logs: Any) -> None:
    """Wait for the step: reading a value needs the computation done."""
    for value in tf.nest.flatten(logs):
        np.asarray(value)


def _variables(model: keras.Model) -> list:
    optimizers = model_optimizers(model)
    found, seen = [], set()
    for v in [*model.variables, *(v for o in optimizers if o is not None for v in o.variables)]:
        if id(v) not in seen:
            seen.add(id(v))
            found.append(v)
    return found


def _snapshot(model: keras.Model) -> list[tuple[Any, np.ndarray]]:
    return [(v, np.array(v.numpy())) for v in _variables(model)]


def _restore(model: keras.Model, saved: list[tuple[Any, np.ndarray]]) -> None:
    for variable, value in saved:
        variable.assign(value)
