"""Typed, validated run configuration loaded from YAML.

Example (not run as a doctest: it reads yaml_configs/ from the repository root):
    >>> from tfdml.config import load_config
    >>> cfg = load_config("yaml_configs/emoji.yaml", ["train.epochs=5"])  # doctest: +SKIP
    >>> cfg.train.epochs  # doctest: +SKIP
    5
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Sequence

import yaml

from tfdml.config.loader import (COMMAND_LINE, build, merge, parse_override, read_yaml_chain, record_origin, set_path,
                                 to_dict)
from tfdml.config.schema import Config
from tfdml.errors import ConfigError

__all__ = ["Config", "load_config", "config_from_dict", "save_config", "to_dict", "diff_configs"]


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load `path` (following `base:` files), apply `key.sub=value` overrides and validate."""
    raw: dict = {}
    origins: dict[str, str] = {}
    for file, data in read_yaml_chain(path) if path is not None else []:
        merge(raw, data, str(file), origins)
    for text in overrides:
        # Set the one leaf (not a merge): `loss.args.alpha=3` keeps the file's other loss arguments.
        key, value = parse_override(text)
        set_path(raw, key, value)
        record_origin(origins, key, value, COMMAND_LINE)
    return config_from_dict(raw, origins)


def config_from_dict(raw: dict, origins: dict[str, str] | None = None) -> Config:
    """Validate a plain mapping (e.g. a saved `config.yaml`) into a `Config`."""
    config = build(Config, raw, origins or {})
    _check_registered(config, origins or {})
    _check_consistent(config, origins or {})
    return config


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def diff_configs(a: Config, b: Config, ignore: Sequence[str] = ()) -> list[str]:
    """Dotted keys whose values differ between two configs (leaves only)."""
    flat_a, flat_b = _flatten(to_dict(a)), _flatten(to_dict(b))
    keys = sorted(set(flat_a) | set(flat_b))
    return [k for k in keys if flat_a.get(k) != flat_b.get(k) and not any(k == i or k.startswith(i + ".") for i in ignore)]


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_registered(config: Config, origins: dict[str, str]) -> None:
    """Names must be registered and their `args` must match the constructor (OML-style registries)."""
    from tfdml.data.readers import READERS
    from tfdml.losses import LOSSES

    _check_args("loss", config.loss.name, LOSSES, config.loss.args, "loss.name", "loss.args", origins)
    _check_args("dataset", config.data.dataset, READERS, config.data.reader_args, "data.dataset",
                "data.reader_args", origins, reserved=("root",))
    _check_backbone(config, origins)


def _check_backbone(config: Config, origins: dict[str, str]) -> None:
    """`model.backbone` is registered or `keras/<Application>`, and `backbone_args` are its arguments."""
    from tfdml.config.loader import _suggest, _where
    from tfdml.models import backbone_arguments

    cfg = config.model
    try:
        params = backbone_arguments(cfg.backbone)
    except ConfigError as err:
        raise ConfigError(f"{_where('model.backbone', origins)}: {err}") from None
    for key in cfg.backbone_args:
        if key not in params:
            raise ConfigError(
                f"{_where(f'model.backbone_args.{key}', origins)}: `{key}` is not an argument of backbone "
                f"`{cfg.backbone}`{_suggest(key, params, 'model.backbone_args.')} Its arguments: {', '.join(params) or 'none'}"
            )


def _check_args(kind: str, name: str, registry: dict, args: dict, name_key: str, args_key: str,
                origins: dict[str, str], reserved: tuple[str, ...] = ()) -> None:
    from tfdml.config.loader import _suggest, _where

    if name not in registry:
        raise ConfigError(f"{_where(name_key, origins)}: unknown {kind} `{name}`{_suggest(name, sorted(registry), '')}"
                          f" Known: {', '.join(sorted(registry))}")
    target = registry[name]
    params = [p for p in inspect.signature(target.__init__ if inspect.isclass(target) else target).parameters
              if p not in ("self", "args", "kwargs", "name", *reserved)]
    for key in args:
        if key not in params:
            raise ConfigError(
                f"{_where(f'{args_key}.{key}', origins)}: `{key}` is not an argument of {kind} `{name}`"
                f"{_suggest(key, params, args_key + '.')} Its arguments: {', '.join(params) or 'none'}"
            )


def _check_consistent(config: Config, origins: dict[str, str]) -> None:
    """Values that are each valid but make no sense together (or at all): rejected at load time, one line each."""
    from tfdml.config.loader import _where
    from tfdml.losses import supports

    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{_where(key, origins)}: {message}")

    data, ev = config.data, config.eval
    for key in ("test_fraction", "val_fraction"):
        if getattr(data, key) >= 1.0:
            fail(f"data.{key}", f"`data.{key}` is {getattr(data, key)!r}; it must be in [0, 1): some classes must "
                                "train (0 is allowed: no such classes)")
    if config.protocol == "mlrc" and data.test_fraction == 0:
        fail("data.test_fraction", "`data.test_fraction` is 0 with protocol: mlrc, whose report is on the test "
                                   "classes; give test classes or use protocol: conventional")
    if not ev.ks or any(k < 1 for k in ev.ks):
        fail("eval.ks", f"`eval.ks` is {list(ev.ks)!r}; it must list at least one k >= 1 (the Recall@K to report), "
                        "e.g. [1, 2, 4, 8]")
    if ev.monitor.startswith("recall@") and int(ev.monitor.partition("@")[2]) not in ev.ks:
        fail("eval.monitor", f"`eval.monitor` is {ev.monitor!r} but `eval.ks` {list(ev.ks)!r} does not compute it; "
                             f"add {ev.monitor.partition('@')[2]} to eval.ks or monitor map@r")
    if config.train.fit_schedule_to_budget and config.train.time_budget_s is None:
        fail("train.fit_schedule_to_budget", "`train.fit_schedule_to_budget` fits the run to train.time_budget_s, "
                                             "which is null: set a budget in seconds (e.g. train.time_budget_s=600) "
                                             "or drop fit_schedule_to_budget")
    low, high = config.augment.crop_scale
    if not 0.0 < low <= high <= 1.0:
        fail("augment.crop_scale", f"`augment.crop_scale` is {[low, high]!r}; it must be [low, high] with "
                                   "0 < low <= high <= 1 (fractions of the image area), e.g. [0.16, 1.0]")
    # A loss whose positives are other images of the batch sees no positive pair with one image per
    # class (sampler.m=1) and trains at loss 0, unless a cross-batch memory supplies positives.
    if (config.sampler.m < 2 and supports(config.loss.name, "needs_batch_positives")
            and not config.loss.xbm.memory_size):
        fail("sampler.m", f"`sampler.m` is 1 with the pair loss `{config.loss.name}`: a batch of one image per class "
                          "has no positive pair and the loss stays 0; use sampler.m >= 2 (e.g. 4), a proxy loss, "
                          "or a cross-batch memory (loss.xbm.memory_size)")
