"""Resuming a run: check that its checkpoint belongs to this config, then restore weights, validation
history, time spent and learning rates.

`tfdml.training.run` calls these; a rerun of the same command resumes from `checkpoints/last.keras`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from tfdml.config import Config, config_from_dict, diff_configs
from tfdml.config.schema import RESUMABLE_KEYS
from tfdml.errors import ConfigError
from tfdml.evaluation.callback import RetrievalValidation
from tfdml.training.budget import TimeBudget
from tfdml.training.callbacks import RunCheckpoint


def resume_state(run_dir: Path, config: Config, log: Any = print) -> dict | None:
    """The checkpoint state to resume from, after checking the checkpoint belongs to this config."""
    state_path, saved_config = run_dir / "checkpoints" / "state.json", run_dir / "config.yaml"
    if not (state_path.is_file() and state_path.with_name("last.keras").is_file()):
        return None
    import yaml

    try:
        previous = config_from_dict(yaml.safe_load(saved_config.read_text()))
    except Exception as err:  # noqa: BLE001 - an unreadable saved config means another version or config
        raise ConfigError(f"{saved_config} cannot be read as a tfdml config ({err}); use another `name=` "
                          f"or delete {run_dir} to start over") from None
    changed = diff_configs(previous, config, ignore=RESUMABLE_KEYS)
    if changed:
        raise ConfigError(
            f"{run_dir} holds a checkpoint of another config (differs in: {', '.join(changed)}). "
            f"Rerun with the same config to resume, pick another run with `name=...`, or delete {run_dir}."
        )
    checkpoint = RunCheckpoint(run_dir / "checkpoints", None, None)  # type: ignore[arg-type]
    if not checkpoint.manifest_path.is_file():
        log(f"{checkpoint.directory} has no manifest (written by an older tfdml): resuming without checking "
            "that its files are of the same epoch")
    state = checkpoint.check()
    for key in diff_configs(previous, config):
        old, new = (_value(c, key) for c in (previous, config))
        if key == "train.epochs" and config.optimizer.schedule != "constant":
            log(f"train.epochs changed from {old} to {new} on resume: the {config.optimizer.schedule} learning-rate "
                f"schedule is rebuilt for {new} epochs and continues at epoch {state['epoch']} of it (so the rate "
                "jumps); rerun with the old train.epochs to keep the old schedule")
        elif key.startswith("optimizer."):
            log(f"{key} changed from {old} to {new} on resume: the optimizers keep their state and use the new value")
    return state


def _value(config: Config, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def set_rates_from_config(model: Any, config: Config) -> None:
    """A constant learning rate is a variable of the optimizer, restored from the checkpoint with its state:
    set it to the config's (times each group's multiplier), so that a resumed run uses a changed rate."""
    for group, optimizer in [("", model.optimizer), *model.group_optimizers.items()]:
        if isinstance(optimizer.learning_rate, keras.Variable):  # a schedule gives a tensor: nothing to set
            optimizer.learning_rate.assign(config.optimizer.learning_rate * model.lr_multipliers.get(group, 1.0))


def restore(model: Any, checkpoint: RunCheckpoint, validation: RetrievalValidation, budget: TimeBudget,
            state: dict) -> int:
    """Load the best and last weights and the validation and budget state of `state`; return its epoch."""
    try:
        if checkpoint.best_path.is_file():
            model.load_weights(str(checkpoint.best_path))
            validation.best_weights = model.get_weights()
        model.load_weights(str(checkpoint.last_path))
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"checkpoint {checkpoint.directory} does not fit the model of this config: {err}") from None
    validation.best_value, validation.best_epoch = float(state["best_value"]), int(state["best_epoch"])
    validation.history = list(state.get("validation", []))
    budget.spent_s = float(state.get("spent_s", 0.0))
    budget.horizon = int(state["horizon"]) if state.get("horizon") is not None else None
    return int(state["epoch"])
