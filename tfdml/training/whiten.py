"""`model.whitening`: after training, fit the head's learned whitening on the training classes, its
shrinkage chosen on the validation classes (`auto`) or given, and keep it with the run.

Example (not run as a doctest: it needs a trained model and embeddings):
    >>> report = whiten_head(model.head, "auto", (train_x, train_y), (val_x, val_y), score)  # doctest: +SKIP
    >>> report["shrinkage"]  # doctest: +SKIP
    0.2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from tfdml.errors import ArtifactError
from tfdml.models.whitening import apply_whitening, fit_whitening

#: Shrinkages `auto` tries (on the pretrained emoji runs every one of them gained on validation).
AUTO_SHRINKAGES = (0.5, 0.2, 0.1, 0.05)
#: The fitted whitening in `checkpoints/`, read back by `load_run` (the weights files keep the identity).
WHITENING_FILE = "whitening.npz"

Split = tuple[np.ndarray, np.ndarray]  # embeddings, labels


def whiten_head(head: Any, setting: float | str, train: Split, val: Split | None,
                score: Callable[[np.ndarray, np.ndarray], float], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fit `head.whitening` on `train`'s raw embeddings and set it; `setting` is a shrinkage or `"auto"`.

    `auto` keeps the shrinkage of `AUTO_SHRINKAGES` with the best `score` on `val` (higher is better),
    or no whitening (the identity) when the raw embeddings score best. The report (JSON-friendly)
    holds every validation score, the chosen `shrinkage` (None: not whitened), and `mean`/`projection`.
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
    shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
    if chosen is None:
        log(f"whitening: the raw embeddings rank first on the validation classes ({shown}); not whitened")
        head.whitening.set(np.zeros(head.dim, "float32"), np.eye(head.dim, dtype="float32"))
        return {"shrinkage": None, "validation": scores}
    mean, projection = fits[chosen]
    head.whitening.set(mean, projection)
    log(f"whitening: shrinkage {chosen}, fitted on {len(train[0])} training embeddings"
        + (f"; validation (none = raw): {shown}" if scores else ""))
    return {"shrinkage": chosen, "validation": scores, "mean": mean, "projection": projection}


def save_whitening(report: dict[str, Any], checkpoints: Path) -> None:
    """Keep a fitted whitening beside the run's weights (or remove a stale one when none was kept)."""
    path = checkpoints / WHITENING_FILE
    if report.get("shrinkage") is None:
        path.unlink(missing_ok=True)
        return
    checkpoints.mkdir(parents=True, exist_ok=True)
    np.savez(path, mean=report["mean"], projection=report["projection"], shrinkage=report["shrinkage"])


def load_whitening(head: Any, checkpoints: Path) -> float | None:
    """Set `head.whitening` from the run's `whitening.npz` if both exist; the shrinkage it was fitted with."""
    path = checkpoints / WHITENING_FILE
    if head.whitening is None or not path.is_file():
        return None
    try:
        with np.load(path) as saved:
            head.whitening.set(saved["mean"], saved["projection"])
            return float(saved["shrinkage"])
    except (OSError, KeyError, ValueError) as err:
        raise ArtifactError(f"{path} cannot be read as this run's whitening ({err}); delete it and rerun the "
                            "training command, which fits it again") from None
