"""The MLRC protocol: class folds, one run per fold, averaged and concatenated reports."""

import json
from pathlib import Path

import numpy as np
import pytest

from tfdml.config import load_config
from tfdml.data import DatasetTable
from tfdml.data.split import fold_split
from tfdml.errors import ConfigError
from tfdml.evaluation import evaluate_retrieval
from tfdml.training import run_protocol

ROOT = Path(__file__).resolve().parents[1]


def test_fold_split_cuts_contiguous_training_class_folds():
    labels = np.repeat(np.arange(10), 2)
    split = np.repeat(["train"] * 6 + ["val"] * 2 + ["test"] * 2, 2)
    table = DatasetTable.from_class_keys([f"i{i}" for i in range(20)], labels, split=split)
    held = [np.unique(fold_split(table, 4, k).subset("val").label).tolist() for k in range(4)]
    assert held == [[0, 1], [2, 3], [4, 5], [6, 7]]  # val classes go back into the folds
    for k in range(4):
        assert np.unique(fold_split(table, 4, k).subset("test").label).tolist() == [8, 9]
    with pytest.raises(ConfigError, match="data.fold=4 must be in 0..3"):
        fold_split(table, 4, 4)


def test_mlrc_runs_four_folds_and_reports_averaged_and_concatenated(tmp_path):
    config = load_config(ROOT / "yaml_configs" / "emoji.yaml", [
        "protocol=mlrc", "sampler.batch_size=32", "train.steps_per_epoch=2", "train.epochs=1",
        "model.backbone_args.widths=[8]", "model.embedding_dim=8", "eval.batch_size=512", "train.verbose=0",
        "export.saved_model=false", "data.reader_args.vendors=[google,twitter]", f"output_dir={tmp_path}",
        "name=mlrc"])
    result = run_protocol(config, log=lambda _: None)
    folds = [json.loads((tmp_path / "mlrc" / f"fold{k}" / "metrics.json").read_text()) for k in range(4)]
    assert [load_config(tmp_path / "mlrc" / f"fold{k}" / "config.yaml").data.fold for k in range(4)] == [0, 1, 2, 3]
    assert folds[0]["data"].startswith("train 717 classes")  # 3/4 of the 956 training classes
    assert result["averaged_8d"]["map@r"] == pytest.approx(np.mean([f["test"]["map@r"] for f in folds]))
    parts = [np.load(tmp_path / "mlrc" / f"fold{k}" / "test_embeddings.npz") for k in range(4)]
    joined = np.concatenate([p["embeddings"] for p in parts], axis=1)
    expected = evaluate_retrieval(joined / np.linalg.norm(joined, axis=1, keepdims=True), parts[0]["labels"])
    assert result["concatenated_32d"]["map@r"] == pytest.approx(expected["map@r"], rel=1e-6)
    assert json.loads((tmp_path / "mlrc" / "protocol.json").read_text())["folds"] == 4
