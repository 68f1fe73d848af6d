"""Config loading: inheritance, overrides, and errors that name the key, the file and the fix."""

from pathlib import Path

import pytest

from tfdml.config import Config, diff_configs, load_config, save_config
from tfdml.config.loader import to_dict
from tfdml.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "yaml_configs"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    assert isinstance(load_config(path), Config)


def test_base_inheritance_and_overrides(tmp_path):
    write(tmp_path, "base.yaml", "seed: 3\noptimizer: {learning_rate: 0.01, name: sgd}\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\noptimizer: {learning_rate: 0.5}\n")
    cfg = load_config(child, ["optimizer.weight_decay=0", "train.epochs=7", "optimizer.learning_rate=1e-3"])
    assert cfg.seed == 3
    assert cfg.optimizer.name == "sgd"  # inherited, deep-merged
    assert cfg.optimizer.learning_rate == pytest.approx(1e-3)  # "1e-3" (a YAML string) read as a number
    assert cfg.optimizer.weight_decay == 0.0 and cfg.train.epochs == 7


def test_loss_args_are_replaced_not_merged(tmp_path):
    write(tmp_path, "base.yaml", "loss: {name: multi_similarity, args: {alpha: 2.0, beta: 50.0}}\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\nloss: {name: contrastive, args: {neg_margin: 0.4}}\n")
    cfg = load_config(child)
    assert cfg.loss.args == {"neg_margin": 0.4}
    # ...but a command-line override sets one argument and keeps the others.
    cfg = load_config(tmp_path / "base.yaml", ["loss.args.alpha=3"])
    assert cfg.loss.args == {"alpha": 3, "beta": 50.0}


def test_mistyped_key_names_key_file_and_nearest(tmp_path):
    path = write(tmp_path, "bad.yaml", "optimizer:\n  learning_rat: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "optimizer.learning_rat" in message and str(path) in message
    assert "did you mean `optimizer.learning_rate`" in message


def test_mistyped_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key `optimiser`; did you mean `optimizer`"):
        load_config(write(tmp_path, "bad.yaml", "optimiser: {}\n"))


def test_error_names_the_file_that_set_the_key(tmp_path):
    write(tmp_path, "base.yaml", "train: {epochs: -1}\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\nseed: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(child)
    assert "base.yaml" in str(err.value) and "at least 1" in str(err.value)


def test_override_errors_name_the_command_line():
    with pytest.raises(ConfigError, match=r"<command line>: unknown key `train.epoch`; did you mean `train.epochs`"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["train.epochs"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.epochs=many", "must be an integer"),
        ("data.test_fraction=1.5", r"in \[0.0, 1.0\]"),
        ("optimizer.schedule=linear", "allowed values: 'constant', 'cosine'"),
        ("augment.flip=maybe", "true or false"),
        ("augment.crop_scale=[0.5]", "must have 2 items"),
        ("optimizer.lr_multipliers.proxies=100", "Valid keys under optimizer.lr_multipliers: backbone, head, loss"),
        ("optimizer.lr_multipliers.heads=10", "did you mean `optimizer.lr_multipliers.head`"),
    ],
)
def test_wrong_types_and_ranges_say_what_is_allowed(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, [override])


def test_registry_names_and_args_are_checked():
    with pytest.raises(ConfigError, match=r"unknown loss `multi_similarty`; did you mean `multi_similarity`"):
        load_config(None, ["loss.name=multi_similarty"])
    with pytest.raises(ConfigError, match=r"`alpah` is not an argument of loss `multi_similarity`; did you mean `loss.args.alpha`"):
        load_config(None, ["loss.args.alpah=2"])
    with pytest.raises(ConfigError, match=r"`vendor` is not an argument of dataset `emoji`"):
        load_config(None, ["data.reader_args.vendor=[google]"])


def test_missing_file_and_base_loops(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yaml")


def test_saved_config_round_trips_and_diffs(tmp_path):
    cfg = load_config(CONFIGS / "emoji.yaml", ["optimizer.learning_rate=0.002"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert to_dict(again) == to_dict(cfg)
    other = load_config(CONFIGS / "emoji.yaml", ["train.epochs=3"])
    assert diff_configs(cfg, other) == ["optimizer.learning_rate", "train.epochs"]
    assert diff_configs(cfg, other, ignore=["train.epochs"]) == ["optimizer.learning_rate"]
