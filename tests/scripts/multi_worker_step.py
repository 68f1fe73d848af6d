"""Training steps on two local workers (MultiWorkerMirroredStrategy) vs one device on the same global batch.

Usage: multi_worker_step.py STEPS OUT_JSON, with `$TF_CONFIG` naming this worker. Each worker trains
on its half of every global batch; the chief (worker 0) then trains a one-device copy on the whole
batches and writes a JSON object to OUT_JSON: the replica count, the losses, the largest weight update
and the largest weight difference between the two sides. SGD, so that a wrong gradient scale shows.
"""

import json
import sys

import numpy as np
import tensorflow as tf

import keras

from tfdml.distribute import get_strategy, is_chief, synchronize_batchnorm
from tfdml.losses import get_loss
from tfdml.models import DMLModel, EmbeddingHead, build_backbone


def make_model() -> DMLModel:
    keras.utils.set_random_seed(0)
    backbone = build_backbone("small_cnn", (16, 16, 3), widths=(8, 16))
    synchronize_batchnorm(backbone)  # global-batch statistics: without it the workers differ from one device
    model = DMLModel(backbone, EmbeddingHead(8), get_loss("multi_similarity", mining_epsilon=None))
    model.build((None, 16, 16, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.5), lr_multipliers={"head": 2.0})
    return model


def train(model: DMLModel, steps: int) -> float:
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (steps, 16, 16, 16, 3)).astype("float32")  # a new global batch each step
    labels = np.tile(np.repeat(np.arange(4), 4), (steps, 1)).astype("int32")
    history = model.fit(tf.data.Dataset.from_tensor_slices((images, labels)), epochs=1, verbose=0)
    return float(np.ravel(history.history["loss"])[-1])


def main() -> None:
    steps, out = int(sys.argv[1]), sys.argv[2]
    strategy = get_strategy("multi_worker")
    with strategy.scope():
        distributed = make_model()
    before = [w.copy() for w in distributed.get_weights()]
    loss_distributed = train(distributed, steps)
    if not is_chief(strategy):
        return
    single = make_model()  # outside the scope: one device, the same initial weights (same seed)
    loss_single = train(single, steps)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), before))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), distributed.get_weights()))
    with open(out, "w") as f:
        json.dump({"replicas": strategy.num_replicas_in_sync, "loss_single": loss_single,
                   "loss_distributed": loss_distributed, "max_update": moved, "max_weight_diff": diff}, f)


if __name__ == "__main__":
    main()
