"""Parameter groups with learning-rate multipliers (and mixed precision's loss scale across them).

Adam-like optimizers are invariant to gradient scale, so a multiplier cannot be applied to the
gradients; each group whose multiplier differs from 1 gets its own clone of the optimizer with a
scaled learning rate (schedules included). The clones are tracked by the model, so their state is
saved in `.keras` checkpoints with the main optimizer's.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfdml")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`multiplier * schedule(step)`.

    Example:
        >>> s = ScaledSchedule(keras.optimizers.schedules.CosineDecay(1e-3, 100), 100.0)
        >>> round(float(s(0)), 6)
        0.1
    """

    def __init__(self, schedule: Any, multiplier: float) -> None:
        self.schedule = schedule
        self.multiplier = float(multiplier)

    def __call__(self, step: Any) -> Any:
        base = self.schedule(step) if callable(self.schedule) else self.schedule
        return base * self.multiplier

    def get_config(self) -> dict:
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.saving.serialize_keras_object(schedule)
        return {"schedule": schedule, "multiplier": self.multiplier}

    @classmethod
    def from_config(cls, config: dict) -> "ScaledSchedule":
        schedule = config["schedule"]
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        return cls(schedule, config["multiplier"])


def scaled_clone(optimizer: keras.optimizers.Optimizer, multiplier: float) -> keras.optimizers.Optimizer:
    """A fresh optimizer of the same class and settings whose learning rate is `multiplier` times larger.

    A `LossScaleOptimizer` (what `compile` makes of the optimizer under a `mixed_float16` policy) gives
    one around a scaled clone of its inner optimizer, with its own dynamic loss scale.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(
            scaled_clone(optimizer.inner_optimizer, multiplier), initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps, name=f"{optimizer.name}_x{multiplier:g}")
    config = optimizer.get_config()
    rate = config["learning_rate"]  # a float, or a schedule serialised as a dict (schedules are stateless)
    if isinstance(rate, dict):
        schedule = keras.optimizers.schedules.deserialize(rate)
        config["learning_rate"] = ScaledSchedule(schedule, multiplier)
    else:
        config["learning_rate"] = float(config["learning_rate"]) * multiplier
    config["name"] = f"{config.get('name', 'optimizer')}_x{multiplier:g}"
    return optimizer.__class__.from_config(config)


def at_scale(gradients: list, optimizer: keras.optimizers.Optimizer, loss_scale: Any) -> list:
    """Gradients of a loss scaled by `loss_scale` re-expressed at `optimizer`'s own scale
    (`optimizer.scale_loss(1.0)`), which it divides by in `apply`.

    Under mixed precision each group optimizer is a `LossScaleOptimizer` with its own dynamic scale;
    the ratio of two powers of two is exact. Without loss scaling (1 / 1) the gradients are returned
    as they are.
    """
    ratio = optimizer.scale_loss(1.0) / loss_scale
    if isinstance(ratio, float) and ratio == 1.0:
        return gradients
    return [g * ops.cast(ratio, g.dtype) for g in gradients]


def skip_together(gradients: dict, optimizers: list) -> dict:
    """With several `LossScaleOptimizer`s, a non-finite gradient anywhere becomes NaN in every group,
    so all of them skip the step and halve their scale, as one optimizer would (their scales stay equal)."""
    if sum(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in optimizers) < 2 or not gradients:
        return gradients
    finite = ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in gradients.values()]))
    poison = ops.where(finite, 0.0, float("nan"))
    return {key: g + ops.cast(poison, g.dtype) for key, g in gradients.items()}


def model_optimizers(model: keras.Model) -> list:
    """The model's optimizer and its parameter groups' (`DMLModel.group_optimizers`; a plain Keras model has none)."""
    return [model.optimizer, *getattr(model, "group_optimizers", {}).values()]
