"""YAML loading for typed configs: `base:` inheritance, `key.sub=value` overrides, precise errors.

The schema is a tree of dataclasses (see `tfdml.config.schema`). Every value is checked against its
field's type and optional `metadata` bounds (`min`, `max`, `choices`); every error names the key, the
file (or the command line) that set it, and what would be right.

Example (not run as a doctest: it reads yaml_configs/ from the repository root):
    >>> from tfdml.config import load_config
    >>> cfg = load_config("yaml_configs/emoji.yaml", ["optimizer.learning_rate=3e-4"])  # doctest: +SKIP
    >>> cfg.optimizer.learning_rate  # doctest: +SKIP
    0.0003
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from tfdml.errors import ConfigError

COMMAND_LINE = "<command line>"


# ----------------------------------------------------------------------------- reading files


def read_yaml_chain(path: str | Path) -> list[tuple[Path, dict]]:
    """Return `[(file, mapping), ...]` from the root `base:` ancestor down to `path`."""
    chain: list[tuple[Path, dict]] = []
    seen: set[Path] = set()
    current: Path | None = Path(path)
    while current is not None:
        current = current.resolve()
        if current in seen:
            raise ConfigError(f"{current}: `base:` chain loops back to this file")
        seen.add(current)
        if not current.is_file():
            raise ConfigError(f"config file not found: {current}")
        try:
            text = current.read_text(encoding="utf-8")
            data = yaml.safe_load(text)
        except UnicodeDecodeError as err:
            raise ConfigError(f"{current}: not UTF-8 text (byte {err.start}: {err.object[err.start:err.start + 1]!r}); "
                              "save the config as UTF-8") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{current}: not valid YAML: {' '.join(str(err).split())}") from None
        if data is None:
            raise ConfigError(f"{current}: the file is empty (or only comments); set at least one key, e.g. "
                              "`base: emoji.yaml` to train the emoji defaults")
        _reject_nan(data, str(current))
        if not isinstance(data, dict):
            raise ConfigError(f"{current}: the top level must be a mapping of keys, got {type(data).__name__}")
        base = data.pop("base", None)
        chain.append((current, data))
        current = (current.parent / base) if base else None
    return chain[::-1]


def _reject_nan(value: Any, where: str, path: str = "") -> None:
    """NaN anywhere (`.nan` in YAML, `nan` on the command line) would train silently on garbage."""
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"{where}: `{path.lstrip('.') or 'value'}` is NaN; give a number")
    if isinstance(value, dict):
        for k, v in value.items():
            _reject_nan(v, where, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _reject_nan(v, where, f"{path}[{i}]")


def parse_override(text: str) -> tuple[str, Any]:
    """`"optimizer.learning_rate=3e-4"` -> `("optimizer.learning_rate", 3e-4)` (value read as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value (e.g. train.epochs=5)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    _reject_nan(value, COMMAND_LINE, key.strip())
    return key.strip(), value


def set_path(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def merge(into: dict, update: Mapping, origin: str, origins: dict[str, str], prefix: str = "") -> dict:
    """Deep-merge `update` into `into`, recording which file set each leaf in `origins`."""
    for key, value in update.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict) and not _is_free_mapping(path):
            merge(into[key], value, origin, origins, path + ".")
        else:
            into[key] = value
            record_origin(origins, path, value, origin)
    return into


def record_origin(origins: dict[str, str], path: str, value: Any, origin: str) -> None:
    """Remember that `origin` set `path` (and every key below it)."""
    origins[path] = origin
    for sub in _leaf_paths(value, path):
        origins[sub] = origin


# Mappings whose keys are user-chosen (loss arguments, lr multipliers) are replaced, not merged,
# so that a child config switching `loss.name` does not inherit the parent's loss arguments.
_FREE_MAPPINGS = ("loss.args", "model.backbone_args", "data.reader_args")


def _is_free_mapping(path: str) -> bool:
    return path in _FREE_MAPPINGS


def _leaf_paths(value: Any, prefix: str) -> Iterable[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{prefix}.{k}"
            yield from _leaf_paths(v, f"{prefix}.{k}")


# ----------------------------------------------------------------------------- building objects


def build(cls: type, data: Mapping, origins: Mapping[str, str], prefix: str = "") -> Any:
    """Build dataclass `cls` from `data`, checking keys, types and bounds."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{_where(prefix.rstrip('.'), origins)}: `{prefix.rstrip('.')}` must be a mapping of keys "
            f"({', '.join(f.name for f in dataclasses.fields(cls))}), got {data!r}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            path = f"{prefix}{key}"
            raise ConfigError(
                f"{_where(path, origins)}: unknown key `{path}`{_suggest(key, fields, prefix)} "
                f"Valid keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(fields)}"
            )
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], field, f"{prefix}{name}", origins)
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, field: dataclasses.Field | None, path: str, origins: Mapping[str, str]) -> Any:
    where = _where(path, origins)
    meta = field.metadata if field is not None else {}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if dataclasses.is_dataclass(tp):
        return build(tp, value if value is not None else {}, origins, path + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if "choices" in meta and not any(type(value) is type(c) and value == c for c in meta["choices"]):
            _raise_not_a_choice(value, meta, path, where)  # name the choices, not the last type's mismatch
        for tp_ in inner[:-1]:  # the first type that takes the value, e.g. `true` or `auto` for bool | str
            try:
                return _coerce(value, tp_, field, path, origins)
            except ConfigError:
                pass
        return _coerce(value, inner[-1], field, path, origins)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: `{path}` is {value!r}; allowed values: {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: `{path}` must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis and len(value) != len(args):
            raise ConfigError(f"{where}: `{path}` must have {len(args)} items, got {value!r}")
        item_types = args[:-1] if origin is tuple and args and args[-1] is Ellipsis else args
        items = [
            _coerce(v, item_types[min(i, len(item_types) - 1)] if item_types else Any, None, f"{path}[{i}]", origins)
            for i, v in enumerate(value)
        ]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: `{path}` must be a mapping, got {value!r}")
        value_type = args[1] if args else Any
        allowed = meta.get("keys")
        for key in value:
            if allowed is not None and key not in allowed:
                raise ConfigError(
                    f"{where}: unknown key `{path}.{key}`{_suggest(key, allowed, path + '.')} "
                    f"Valid keys under {path}: {', '.join(allowed)}"
                )
        return {k: _coerce(v, value_type, None, f"{path}.{k}", origins) for k, v in value.items()}
    if tp is Any:
        return value
    return _check_bounds(_scalar(value, tp, path, where), meta, path, where)


def _scalar(value: Any, tp: type, path: str, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: `{path}` must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: `{path}` must be an integer, got {value!r}")
    if tp is float:
        # PyYAML reads `1e-3` (no dot) as a string: accept any text that parses as a number.
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isnan(number):
            raise ConfigError(f"{where}: `{path}` is NaN; give a number")
        if number is not None:
            return number
        raise ConfigError(f"{where}: `{path}` must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: `{path}` must be a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp} at {path}")


def _raise_not_a_choice(value: Any, meta: Mapping, path: str, where: str) -> None:
    raise ConfigError(
        f"{where}: `{path}` is {value!r}; allowed values: {', '.join(map(repr, meta['choices']))}"
        f"{_suggest(str(value), [str(c) for c in meta['choices']], '')}"
    )


def _check_bounds(value: Any, meta: Mapping, path: str, where: str) -> Any:
    if "choices" in meta and value not in meta["choices"]:
        _raise_not_a_choice(value, meta, path, where)
    low, high = meta.get("min"), meta.get("max")
    if low is not None and value < low or high is not None and value > high:
        bounds = f"at least {low}" if high is None else f"at most {high}" if low is None else f"in [{low}, {high}]"
        raise ConfigError(f"{where}: `{path}` is {value!r}; it must be {bounds}")
    return value


def _where(path: str, origins: Mapping[str, str]) -> str:
    path = path.split("[", 1)[0]  # a list item was set with its list
    while path:
        if path in origins:
            return origins[path]
        path = path.rpartition(".")[0]
    return "<defaults>"


def _suggest(key: str, valid: Iterable[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"; did you mean `{prefix}{close[0]}`?" if close else "."


def to_dict(obj: Any) -> Any:
    """A plain, YAML-safe dict of a config dataclass (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
