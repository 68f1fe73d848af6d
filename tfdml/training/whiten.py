"""`model.whitening`: after training, fit the head's learned whitening on the training classes, its
shrinkage chosen on the validation classes (`auto`) or given, and keep it with the run.

Example (not run as a doctest: it needs a model trained with `EmbeddingHead(..., whitening=True)`):
    >>> describe_raw(model.head)  # the model outputs what the whitening is fitted on  # doctest: +SKIP
    >>> train, val = embed_dataset(model, train_ds), embed_dataset(model, val_ds)  # doctest: +SKIP
    >>> whiten_head(model.head, "auto", train, val)["shrinkage"]  # MAP@R on val picks  # doctest: +SKIP
    0.5
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tfdml.errors import ArtifactError
from tfdml.evaluation import evaluate_retrieval
from tfdml.models import DMLModel, EmbeddingHead, descriptor_channels, tap_backbone
from tfdml.models.whitening import apply_whitening, fit_whitening, unfitted_whitening

#: Shrinkages `auto` tries (on the pretrained emoji runs every one of them gained on validation).
AUTO_SHRINKAGES = (0.5, 0.2, 0.1, 0.05)
#: The fitted whitening in `checkpoints/`, read back by `load_run` (the weights files keep the identity).
WHITENING_FILE = "whitening.npz"

Split = tuple[np.ndarray, np.ndarray]  # embeddings, labels


def map_at_r(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """MAP@R of `embeddings` retrieving among themselves: the default validation score."""
    return evaluate_retrieval(embeddings, labels, ks=(1,))["map@r"]


def choose_whitening(setting: float | str, train: Split, val: Split | None,
                     score: Callable[[np.ndarray, np.ndarray], float] = map_at_r,
                     keep: int | None = None) -> dict[str, Any]:
    """The whitening `setting` (a shrinkage, or `"auto"`) gives for raw `train` descriptors, as a report.

    A descriptor is the embedding (its first `keep` columns; default all) followed by any descriptor
    layers' features (`model.descriptor_layers`); the whitening is fitted on all of it, and `none`
    means the raw embedding alone. `auto` keeps the shrinkage of `AUTO_SHRINKAGES` with the best
    `score` on `val` (higher is better), or none when the raw embedding scores best. The report
    (JSON-friendly but for the arrays) holds every validation score, the chosen `shrinkage` (None:
    not whitened), and the `mean` and `projection` to apply (`tfdml.models.apply_whitening`).
    """
    if setting == "auto" and val is None:
        raise ValueError("whitening 'auto' chooses on the validation classes: give val, or a shrinkage such as 0.2")
    dim = train[0].shape[1]
    raw = unfitted_whitening(dim, dim if keep is None else keep)
    candidates = AUTO_SHRINKAGES if setting == "auto" else (float(setting),)
    fits: dict[float | None, tuple[np.ndarray, np.ndarray]] = {
        None: raw, **{s: fit_whitening(*train, shrinkage=s) for s in candidates}}
    scores: dict[str, float] = {}
    chosen: float | None = candidates[0]
    if val is not None:
        for s, (mean, projection) in fits.items():
            scores["none" if s is None else str(s)] = score(apply_whitening(val[0], mean, projection), val[1])
        if setting == "auto":
            chosen = max(candidates, key=lambda s: scores[str(s)])
            if scores[str(chosen)] <= scores["none"]:
                chosen = None
    mean, projection = fits[chosen]
    return {"shrinkage": chosen, "validation": scores, "mean": mean, "projection": projection}


def whiten_head(head: Any, setting: float | str, train: Split, val: Split | None,
                score: Callable[[np.ndarray, np.ndarray], float] = map_at_r,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Set `head.whitening` to what `choose_whitening` picks for the raw descriptors `train` and `val`
    (`head.describe`; without descriptor layers, the embeddings), and return its report."""
    report = choose_whitening(setting, train, val, score, keep=head.dim)
    head.whitening.set(report["mean"], report["projection"])
    shown = ", ".join(f"{k} {v:.4f}" for k, v in report["validation"].items())
    extra = f" and {len(head.descriptor_dims)} descriptor layers" if head.descriptor_dims else ""
    if report["shrinkage"] is None:
        log(f"whitening: the raw embeddings rank first on the validation classes ({shown}); not whitened")
    else:
        log(f"whitening: shrinkage {report['shrinkage']}, fitted on {len(train[0])} training embeddings{extra}"
            + (f"; validation (none = raw): {shown}" if shown else ""))
    return report


def with_descriptor_layers(model: DMLModel, layers: Sequence[str]) -> DMLModel:
    """A model that serves `model`'s embedding followed by `layers`' pooled features through a new,
    unfitted whitening (`whiten_head` fits it): to try `model.descriptor_layers` on a trained model.

    It shares `model`'s backbone and loss, and copies its head's linear layer.

    Example (not run as a doctest: it needs a trained model):
        >>> tapped = with_descriptor_layers(model, ["conv_pw_11_relu"])  # doctest: +SKIP
        >>> describe_raw(tapped.head); train = embed_dataset(tapped, train_ds)  # doctest: +SKIP
    """
    head = model.head
    dims = descriptor_channels(tap_backbone(model.backbone, layers))
    new_head = EmbeddingHead(head.dim, pooling=head.pooling, normalize=head.normalize, whitening=True,
                             descriptor_dims=dims, name=head.name)
    tapped = DMLModel(model.backbone, new_head, model.metric_loss, descriptor_layers=layers, name=model.name)
    tapped.build((None, *model.backbone.input_shape[1:]))
    new_head.linear.set_weights(head.linear.get_weights())
    return tapped


def describe_raw(head: Any) -> None:
    """Set `head.whitening` to the identity, so that the model outputs raw descriptors to fit on."""
    head.whitening.set(np.zeros(head.whitening.dim, "float32"), np.eye(head.whitening.dim, dtype="float32"))


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
