"""Training glue for retrieval evaluation: embed a dataset, and validate during `fit`.

Example (not run as a doctest: it needs a model and datasets):
    >>> cb = RetrievalValidation(val_ds, monitor="map@r")            # doctest: +SKIP
    >>> model.fit(train_ds, epochs=10, callbacks=[cb])                # doctest: +SKIP
    >>> cb.best_value, cb.best_epoch                                  # doctest: +SKIP
"""

from __future__ import annotations

import weakref
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfdml.errors import NON_FINITE_HINT, TfdmlError
from tfdml.evaluation.metrics import evaluate_retrieval
from tfdml.evaluation.progress import Verbose, with_progress


_EMBED_FUNCTIONS: "weakref.WeakKeyDictionary[keras.Model, Callable]" = weakref.WeakKeyDictionary()


def _embed_function(model: keras.Model) -> Callable:
    """One traced inference function per model, reused by every evaluation of that model."""
    if model not in _EMBED_FUNCTIONS:
        _EMBED_FUNCTIONS[model] = tf.function(
            lambda images: model(images, training=False), reduce_retracing=True, autograph=False)
    return _EMBED_FUNCTIONS[model]


def embed_dataset(model: keras.Model, dataset: tf.data.Dataset, verbose: Verbose = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and labels of a finite `(images, labels)` dataset, in dataset order.

    `verbose` (0, 1, 2 or "auto", as in `tfdml.evaluation.progress`) shows a Progbar over the batches.

    Example (not run as a doctest: it needs a model and datasets):
        >>> embeddings, labels = embed_dataset(model, test_ds, verbose="auto")  # doctest: +SKIP
        40/40 ━━━━━━━━━━━━━━━━━━━━ 3s 70ms/batch
    """
    embeddings, labels = [], []
    step = _embed_function(model)
    for images, batch_labels in with_progress(dataset, verbose, total=dataset_length(dataset)):
        embeddings.append(step(images).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(embeddings).astype(np.float32), np.concatenate(labels)


def dataset_length(dataset: tf.data.Dataset) -> int | None:
    """The number of batches of `dataset` when tf.data knows it, else None (a bar without a total)."""
    cardinality = int(dataset.cardinality())
    return cardinality if cardinality >= 0 else None


class RetrievalValidation(keras.callbacks.Callback):
    """Evaluate retrieval on held-out classes every `every_epochs` epochs and keep the best weights.

    Metrics are added to the epoch logs as `val_<metric>` *before* later callbacks (TensorBoard,
    checkpoints) see them: put this callback first. At the end of training the best weights are
    restored (`restore_best=True`). Model selection must use validation classes, never test classes.
    """

    hint = NON_FINITE_HINT  # what a non-finite embedding's error suggests (the runner names the config's rate)

    def __init__(self, dataset: tf.data.Dataset | None, *, monitor: str = "map@r", every_epochs: int = 1,
                 ks: Sequence[int] = (1, 2, 4, 8), backend: str = "auto", restore_best: bool = True,
                 best_value: float = -np.inf, best_epoch: int = -1) -> None:
        super().__init__()
        self.dataset, self.monitor, self.every_epochs = dataset, monitor, every_epochs
        self.ks, self.backend, self.restore_best = tuple(ks), backend, restore_best
        self.best_value, self.best_epoch = best_value, best_epoch
        self.best_weights: list | None = None
        self.history: list[dict] = []
        self.last_logs: dict[str, float] = {}  # the latest validation's `val_*` entries

    def evaluate(self, epoch: int = -1) -> dict[str, float]:
        embeddings, labels = embed_dataset(self.model, self.dataset)
        if not np.isfinite(embeddings).all():
            raise TfdmlError(f"the model's embeddings became NaN or infinite by the end of epoch {epoch + 1}. "
                             f"{self.hint}")
        return evaluate_retrieval(embeddings, labels, ks=self.ks, backend=self.backend)

    def validated(self, epoch: int) -> bool:
        """Whether the metrics of `epoch` (0-based) have been computed."""
        return bool(self.history) and self.history[-1]["epoch"] == epoch + 1

    @property
    def latest_value(self) -> float:
        """The monitored metric of the latest validation (what callbacks that follow the metric act on)."""
        if not self.history:
            raise ValueError("no validation has run yet")
        return float(self.history[-1][self.monitor])

    def improved_at(self, epoch: int) -> bool:
        """Whether the validation of `epoch` (0-based) set the best value (and so the best weights)."""
        return self.best_epoch == epoch + 1

    def annotate(self, entries: dict) -> None:
        """Add `entries` to the latest validation's record (kept in checkpoints' state and metrics.json)."""
        if not self.history:
            raise ValueError("no validation has run yet")
        self.history[-1].update(entries)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Validate (once per epoch: callbacks that act on the metric may call this first themselves)."""
        if self.dataset is None or (epoch + 1) % self.every_epochs:  # no dataset: no validation classes
            return
        if not self.validated(epoch):
            metrics = self.evaluate(epoch)
            self.history.append({"epoch": epoch + 1, **metrics})
            self.last_logs = {f"val_{k}": v for k, v in metrics.items() if not k.startswith("num_")}
            if metrics[self.monitor] > self.best_value:
                self.best_value, self.best_epoch = float(metrics[self.monitor]), epoch + 1
                self.best_weights = self.model.get_weights()
        if logs is not None:
            logs.update(self.last_logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.restore_best and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
