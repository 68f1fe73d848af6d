"""Builds a wheel whose package holds the configs: `yaml_configs/*.yaml` are copied to `tfdml/configs/`.

`yaml_configs/` stays the one place a clone edits (commands, tests and benchmarks name its files);
the copy exists only in what is built, so `tfdml-train emoji.yaml` works from an installed wheel.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "tfdml" / "configs"
        target.mkdir(parents=True, exist_ok=True)
        for config in sorted((ROOT / "yaml_configs").glob("*.yaml")):
            shutil.copy2(config, target / config.name)


setup(cmdclass={"build_py": BuildPyWithConfigs})
