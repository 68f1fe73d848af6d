"""Find a config by path or by name: `tfdml-train emoji.yaml` works in a clone and from an installed wheel.

The configs live in the repository's `yaml_configs/`; building a wheel copies them into the package
as `tfdml/configs/` (see `setup.py`). A bare name (`emoji`, `emoji.yaml`) is looked up in the
working directory, then in the installed package's `tfdml/configs/`, then in the clone's
`yaml_configs/` (an editable install); a name that is found nowhere is an error naming each place.

Example:
    >>> find_config("emoji").name
    'emoji.yaml'
"""

from __future__ import annotations

import difflib
from pathlib import Path

from tfdml.errors import ConfigError

PACKAGED = Path(__file__).resolve().parents[1] / "configs"  # tfdml/configs/ in an installed wheel
REPOSITORY = Path(__file__).resolve().parents[2] / "yaml_configs"  # the clone's, for editable installs


def config_dirs() -> list[Path]:
    """The directories that exist among the packaged and the repository config folders, in lookup order."""
    return [d for d in (PACKAGED, REPOSITORY) if d.is_dir()]


def config_names() -> list[str]:
    """Names (without `.yaml`) of the configs found by name."""
    return sorted({p.stem for d in config_dirs() for p in d.glob("*.yaml")})


def find_config(name: str | Path) -> Path:
    """The config file `name` names: an existing path as given, else a bare name looked up in `config_dirs()`."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    tried = [str(path if path.is_absolute() else Path.cwd() / path)]
    if path.parent == Path(".") and not path.is_absolute():
        for directory in (PACKAGED, REPOSITORY):
            candidates = [directory / path.name] + ([] if path.suffix else [directory / f"{path.name}.yaml"])
            for candidate in candidates:
                if candidate.is_file():
                    return candidate
            tried.append(f"{directory}/{path.name}{'' if path.suffix else '[.yaml]'}"
                         + ("" if directory.is_dir() else " (no such folder)"))
    names = config_names()
    close = difflib.get_close_matches(path.stem, names, n=1)
    hint = f"did you mean {close[0]}.yaml? " if close else ""
    raise ConfigError(f"config file not found: {name} (looked in {'; '.join(tried)}); {hint}"
                      f"pass a path, or one of the shipped configs by name: {', '.join(names) or 'none found'}")
