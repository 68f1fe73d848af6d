"""`tfdml-train CONFIG [key.sub=value ...]`: train, validate, test and export one run.

Examples:
    tfdml-train yaml_configs/emoji.yaml
    tfdml-train emoji.yaml train.epochs=5 optimizer.learning_rate=3e-4 name=short
Rerunning the same command resumes from the run's last checkpoint.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

def resolve_config_path(name: str) -> Path:
    """A path as given, or a bare name (`cars.yaml`, `cars`) of a shipped config; ConfigError naming where it looked."""
    from tfdml.config.locate import find_config

    return find_config(name)


class _Interrupts:
    """Ctrl-C raises KeyboardInterrupt as usual, and is also remembered: a KeyboardInterrupt that lands in
    a destructor is swallowed by Python ("Exception ignored in ..."), so a callback raises it again at
    the next batch boundary."""

    def __init__(self) -> None:
        self.seen = False

    def handler(self, signum: int, frame: Any) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def callback(self) -> Any:
        import keras

        interrupts = self

        class RaiseOnInterrupt(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                if interrupts.seen:
                    raise KeyboardInterrupt

            on_epoch_end = on_train_batch_end

        return RaiseOnInterrupt()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfdml-train", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("config", help="YAML config file, or the name of a shipped one (emoji, cub.yaml, ...)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.epochs=5")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from tfdml.config import load_config
    from tfdml.errors import TfdmlError

    try:
        config = load_config(resolve_config_path(args.config), args.overrides)
        from tfdml.training import run_protocol

        interrupts = _Interrupts()
        signal.signal(signal.SIGINT, interrupts.handler)
        run_protocol(config, callbacks=[interrupts.callback()])
    except TfdmlError as err:
        print(f"tfdml-train: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ntfdml-train: interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
