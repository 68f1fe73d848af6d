"""Each benchmark config trains end to end through `bin/tfdml-train` on a miniature official-layout tree.

The network is shrunk by overrides (small CNN, 32 px, two steps); everything else (the reader, the
official split, the pipeline, and CCP / Metrix where the config uses them) runs as a user's would.
"""

import json
import subprocess
from pathlib import Path

import pytest

import miniatures

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["model.backbone=small_cnn", "model.backbone_weights=null", "model.backbone_args={widths: [8]}",
         "model.embedding_dim=8", "data.image_size=32", "data.val_fraction=0.34", "sampler.batch_size=4",
         "sampler.m=2", "train.epochs=2", "train.steps_per_epoch=2", "data.reader_args={check_counts: false}",
         "eval.batch_size=16", "export.saved_model=false", "train.verbose=0", "ccp.pool_size=2",
         "ccp.proxies_per_class=2", "mixing.max_mixtures=4",
         "protocol=conventional"]  # the miniatures have 3 training classes: too few for MLRC's 4 folds


@pytest.mark.parametrize("config, write", [
    ("cub_ccp.yaml", lambda tmp: miniatures.write_cub(tmp).root),
    ("cars.yaml", lambda tmp: miniatures.write_cars(tmp, layout="B").root),
    ("sop_metrix.yaml", lambda tmp: miniatures.write_sop(tmp).root),
    ("inshop.yaml", lambda tmp: miniatures.write_inshop(tmp).root),
])
def test_benchmark_config_trains_on_a_miniature(tmp_path, config, write):
    root = write(tmp_path / "data")
    out = subprocess.run([str(ROOT / "bin" / "tfdml-train"), config, f"data.root={root}", f"output_dir={tmp_path}",
                          "name=mini", *SMALL], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    metrics = json.loads((tmp_path / "mini" / "metrics.json").read_text())
    assert len(metrics["validation"]) == 2 and 0.0 <= metrics["test"]["map@r"] <= 1.0
    assert "test" in out.stdout and "held-out classes" in out.stdout


def test_metrix_ccp_config_trains_with_both(tmp_path):
    from tfdml.ccp import CCPLoss
    from tfdml.config import load_config
    from tfdml.training import run
    from tfdml.training.builders import build_model

    config = load_config(ROOT / "yaml_configs" / "emoji_metrix_ccp.yaml", [
        "sampler.batch_size=32", "train.steps_per_epoch=2", "train.epochs=1", "model.backbone_args.widths=[8]",
        "model.embedding_dim=8", "eval.batch_size=512", "train.verbose=0", "export.saved_model=false",
        "ccp.proxies_per_class=2", "ccp.pool_size=2", "mixing.max_mixtures=8",
        "data.reader_args.vendors=[google,twitter]", f"output_dir={tmp_path}"])
    model = build_model(config, num_classes=10)
    assert isinstance(model.metric_loss, CCPLoss) and model.proximal is not None
    assert model.mixing.level == "feature" and model.mixing.kinds == ("pos_neg", "anchor_neg")
    assert model.head.normalize == "unit_ball"
    messages = []
    run(config, log=messages.append)
    metrics = json.loads((tmp_path / "emoji_metrix_ccp" / "metrics.json").read_text())
    assert metrics["validation"][0]["ccp_round"] == 1 and 0.0 <= metrics["test"]["map@r"] <= 1.0
