"""`model.whitening`: after training, fit the head's learned whitening on the training classes, its
shrinkage chosen on the validation classes (`auto`) or given, and keep it with the run.

Example (not run as a doctest: it needs a model trained with `EmbeddingHead(..., whitening=True)`):
    >>> train, val = embed_dataset(model, train_ds), embed_dataset(model, val_ds)  # doctest: +SKIP
    >>> whiten_head(model.head, "auto", train, val)["shrinkage"]  # MAP@R on val picks  # doctest: +SKIP
    0.5
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tfdml.errors import ArtifactError
from tfdml.evaluation import evaluate_retrieval
from tfdml.models.whitening import apply_whitening, fit_whitening

#: Shrinkages `auto` tries (on the pretrained emoji runs every one of them gained on validation).
AUTO_SHRINKAGES = (0.5, 0.2, 0.1, 0.05)
#: The fitted whitening in `checkpoints/`, read back by `load_run` (the weights files keep the identity).
WHITENING_FILE = "whitening.npz"

Split = tuple[np.ndarray, np.ndarray]  # embeddings, labels


def map_at_r(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """MAP@R of `embeddings` retrieving among themselves: the default validation score."""
    return evaluate_retrieval(embeddings, labels, ks=(1,))["map@r"]


def choose_whitening(setting: float | str, train: Split, val: Split | None,
                     score: Callable[[np.ndarray, np.ndarray], float] = map_at_r) -> dict[str, Any]:
    """The whitening `setting` (a shrinkage, or `"auto"`) gives for raw `train` embeddings, as a report.

    `auto` keeps the shrinkage of `AUTO_SHRINKAGES` with the best `score` on `val` (higher is better),
    or none when the raw embeddings score best. The report (JSON-friendly but for the arrays) holds
    every validation score (`none`: raw), the chosen `shrinkage` (None: not whitened) and, when
    whitened, `mean` and `projection` (`tfdml.models.apply_whitening`).
    """
    if setting == "auto" and val is None:
        raise ValueError("whitening 'auto' chooses on the validation classes: give val, or a shrinkage such as 0.2")
    candidates = AUTO_SHRINKAGES if setting == "auto" else (float(setting),)
    fits = {s: fit_whitening(*train, shrinkage=s) for s in candidates}
    scores: dict[str, float] = {}
    chosen: float | None = candidates[0]
    if val is not None:
        scores["none"] = score(*val)
        for s, (mean, projection) in fits.items():
            scores[str(s)] = score(apply_whitening(val[0], mean, projection), val[1])
        if setting == "auto":
            chosen = max(candidates, key=lambda s: scores[str(s)])
            if scores[str(chosen)] <= scores["none"]:
                chosen = None
    if chosen is None:
        return {"shrinkage": None, "validation": scores}
    mean, projection = fits[chosen]
    return {"shrinkage": chosen, "validation": scores, "mean": mean, "projection": projection}


def whiten_head(head: Any, setting: float | str, train: Split, val: Split | None,
                score: Callable[[np.ndarray, np.ndarray], float] = map_at_r,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Set `head.whitening` to what `choose_whitening` picks (the identity when it picks none); its report."""
    report = choose_whitening(setting, train, val, score)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in report["validation"].items())
    if report["shrinkage"] is None:
        log(f"whitening: the raw embeddings rank first on the validation classes ({shown}); not whitened")
        head.whitening.set(np.zeros(head.dim, "float32"), np.eye(head.dim, dtype="float32"))
    else:
        head.whitening.set(report["mean"], report["projection"])
        log(f"whitening: shrinkage {report['shrinkage']}, fitted on {len(train[0])} training embeddings"
            + (f"; validation (none = raw): {shown}" if shown else ""))
    return report


def save_whitening(report: dict[str, Any], checkpoints: Path) -> None:
    """Keep a fitted whitening beside the run's weights (or remove a stale one when none was kept)."""
    path = checkpoints / WHITENING_FILE
    if report.get("shrinkage") is None:
        path.unlink(missing_ok=True)
        return
    checkpoints.mkdir(parents=True, exist_ok=True)
    np.savez(path, mean=report["mean"], projection=report["projection"], shrinkage=report["shrinkage"])


def load_whitening(head: Any, checkpoints: Path) -> None:
    """Set `head.whitening` from the run's `whitening.npz` if both exist."""
    path = checkpoints / WHITENING_FILE
    if head.whitening is None or not path.is_file():
        return
    try:
        with np.load(path) as saved:
            head.whitening.set(saved["mean"], saved["projection"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise ArtifactError(f"{path} cannot be read as this run's whitening ({err}); delete it and rerun the "
                            "training command, which fits it again") from None
