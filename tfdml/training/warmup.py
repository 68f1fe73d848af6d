"""Head warm-up: train only the embedding head and the loss's parameters before fine-tuning the backbone.

A new head (and new proxies) on a pretrained backbone first sends large, random gradients into it;
Metrix's code trains the head alone for 5 epochs before fine-tuning, and proxy losses need it most.
"""

from __future__ import annotations

from typing import Callable

import keras

from tfdml.models.registry import freeze_fixed_parts


class HeadWarmup(keras.callbacks.Callback):
    """Freeze `model.backbone` for the first `epochs` epochs, then unfreeze it (BatchNorm stays frozen
    when `keep_batchnorm_frozen`, and the stem through the layer `freeze_until` when it names one). The
    state follows the epoch number, so a run resumed inside the warm-up stays inside it. Changing what
    is trainable retraces the training step.

    Example (not run as a doctest: it needs a model and a training dataset):
        >>> model.fit(train_ds, epochs=40, callbacks=[HeadWarmup(5)])  # doctest: +SKIP
    """

    def __init__(self, epochs: int, keep_batchnorm_frozen: bool = False, log: Callable[[str], None] = print,
                 freeze_until: str | None = None) -> None:
        super().__init__()
        self.epochs, self.keep_batchnorm_frozen, self.log = int(epochs), keep_batchnorm_frozen, log
        self.freeze_until = freeze_until

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        backbone = self.model.backbone
        trainable = epoch >= self.epochs
        if backbone.trainable == trainable:
            return
        backbone.trainable = trainable  # Keras sets every sub-layer, BatchNormalization included
        if trainable:
            freeze_fixed_parts(backbone, self.freeze_until, self.keep_batchnorm_frozen)
        self.model.make_train_function(force=True)  # the traced step captured the old variable list
        self.log(f"head warm-up: backbone frozen for epochs 1-{self.epochs}" if not trainable
                 else f"head warm-up done after epoch {epoch}: fine-tuning the backbone")
