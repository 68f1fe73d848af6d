"""Progress of the long phases: embedding and blockwise search show a Progbar; `auto` writes plain lines to a file.

(A whole run's output when stdout is not a terminal is checked in test_export_commands.py, on its tiny run.)
"""

from __future__ import annotations

import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdml.config import load_config
from tfdml.errors import ConfigError
from tfdml.evaluation.callback import embed_dataset
from tfdml.evaluation.blockwise import blockwise_search
from tfdml.evaluation.neighbours import l2_normalise
from tfdml.evaluation.progress import resolve_verbose

CONTROL = re.compile(r"[\r\x1b\b]")


def _model_and_data() -> tuple[keras.Model, tf.data.Dataset]:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    return model, tf.data.Dataset.from_tensor_slices((x, np.arange(10))).batch(4)  # 3 batches


def test_embed_dataset_shows_a_bar_or_one_plain_line(capsys):
    model, dataset = _model_and_data()
    embeddings, labels = embed_dataset(model, dataset, verbose=1)
    bar = capsys.readouterr().out
    assert embeddings.shape == (10, 3) and labels.tolist() == list(range(10))
    assert "3/3" in bar and "━" in bar and "batch" in bar  # Keras's bar: redrawn in place, with colours
    embed_dataset(model, dataset, verbose="auto")  # pytest's captured stdout is not a terminal
    line = capsys.readouterr().out
    assert re.fullmatch(r"3/3 - \d+s - \d+[mu]?s/batch\n", line), repr(line)
    embed_dataset(model, dataset)  # silent by default (the per-epoch validation)
    assert capsys.readouterr().out == ""


def test_embed_dataset_counts_batches_of_unknown_number(capsys):
    model, dataset = _model_and_data()
    unknown = dataset.filter(lambda x, y: True)  # tf.data no longer knows how many batches
    embed_dataset(model, unknown, verbose=2)
    assert capsys.readouterr().out.startswith("3/3 - ")


def test_blockwise_search_shows_a_line_per_search_over_its_tiles(capsys):
    x = l2_normalise(np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32))
    quiet = blockwise_search(x, None, 3, block_size=20)
    assert capsys.readouterr().out == ""
    shown = blockwise_search(x, None, 3, block_size=20, verbose=2)
    out = capsys.readouterr().out
    assert re.fullmatch(r"6/6 - \d+s - \d+[mu]?s/tile\n", out), repr(out)  # 3 row blocks: 3 + 2 + 1 tiles
    np.testing.assert_array_equal(shown[0], quiet[0])
    blockwise_search(x, None, 3, verbose=2)  # a single tile: no line
    assert capsys.readouterr().out == ""


def test_auto_is_a_bar_on_a_terminal_and_lines_elsewhere(monkeypatch):
    class Terminal:
        def isatty(self) -> bool:
            return True

    assert resolve_verbose("auto") == 2  # pytest's capture
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert resolve_verbose("auto") == 1 and resolve_verbose(0) == 0
    with pytest.raises(ValueError, match="verbose must be 0, 1, 2 or 'auto'"):
        resolve_verbose(3)


def test_train_verbose_defaults_to_auto_and_names_its_choices():
    assert load_config().train.verbose == "auto"
    assert load_config(None, ["train.verbose=2"]).train.verbose == 2
    for bad in ("3", "true", "loud"):
        with pytest.raises(ConfigError, match=r"`train.verbose` is .*; allowed values: 0, 1, 2, 'auto'"):
            load_config(None, [f"train.verbose={bad}"])
