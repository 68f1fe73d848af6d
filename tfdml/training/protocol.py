"""The MLRC evaluation protocol (Musgrave et al. 2020; ccp.md §4) around `run`.

The training classes are cut into 4 contiguous folds; fold k trains on the other three and picks
its weights on fold k. Each fold model is tested on the test classes; the protocol reports the
fold models' metrics averaged ("128D" for 128-d embeddings) and the metrics of the four models'
embeddings concatenated and renormalised ("512D"), as P@1, R-Precision and MAP@R.

Example (not run as a doctest: it trains several runs on CUB-200, which must be on disk):
    >>> from tfdml.config import load_config
    >>> result = run_protocol(load_config("yaml_configs/cub_ccp.yaml", ["protocol=mlrc"]))  # doctest: +SKIP
    >>> result["concatenated"]["map@r"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfdml.config import Config
from tfdml.distribute import is_chief
from tfdml.evaluation import evaluate_retrieval
from tfdml.training.runner import run

REPORTED = ("precision@1", "r_precision", "map@r")


def run_protocol(config: Config, log: Any = print, folds: int = 4, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """`run(config)` for `protocol: conventional`; for `mlrc`, one run per fold and the combined report.

    `callbacks` go to every run (see `run`)."""
    if config.protocol == "conventional":
        return run(config, log, callbacks)
    fold_runs = []
    for fold in range(folds):
        log(f"MLRC fold {fold + 1}/{folds}: validating on training-class fold {fold}")
        data = dataclasses.replace(config.data, folds=folds, fold=fold)
        fold_config = dataclasses.replace(config, name=f"{config.name}/fold{fold}", data=data, protocol="conventional")
        run(fold_config, log, callbacks)
        fold_runs.append(Path(config.output_dir) / fold_config.name)
    if config.distribute == "multi_worker" and not is_chief():  # the chief's fold runs hold the test embeddings
        return {"protocol": "mlrc", "folds": folds}

    saved = [np.load(d / "test_embeddings.npz") for d in fold_runs]
    per_fold = [json.loads((d / "metrics.json").read_text())["test"] for d in fold_runs]
    averaged = {k: float(np.mean([m[k] for m in per_fold])) for k in REPORTED}
    joined = np.concatenate([s["embeddings"] / np.linalg.norm(s["embeddings"], axis=1, keepdims=True)
                             for s in saved], axis=1)
    first = saved[0]
    masks = {} if first["is_query"].all() and first["is_gallery"].all() else {
        "query_mask": first["is_query"], "gallery_mask": first["is_gallery"]}
    concatenated = evaluate_retrieval(joined, first["labels"], ks=config.eval.ks, backend=config.eval.backend,
                                      **masks)
    dim = saved[0]["embeddings"].shape[1]
    result = {"protocol": "mlrc", "folds": folds,
              f"averaged_{dim}d": averaged, f"concatenated_{dim * folds}d": {k: concatenated[k] for k in REPORTED},
              "per_fold": per_fold}
    out = Path(config.output_dir) / config.name / "protocol.json"
    out.write_text(json.dumps(result, indent=1))
    log(f"MLRC: {folds} folds averaged ({dim}D): " + ", ".join(f"{k} {v:.4f}" for k, v in averaged.items()))
    log(f"MLRC: concatenated ({dim * folds}D): " + ", ".join(f"{k} {concatenated[k]:.4f}" for k in REPORTED))
    return result
