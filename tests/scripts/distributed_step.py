"""Training steps on 2 logical CPU replicas vs one device on the same global batch (run as a script).

Usage: distributed_step.py LOSS_NAME LOSS_ARGS_JSON STEPS ("xbm": N in the args wraps the loss in a memory;
"mixing": {...} adds Metrix with those arguments). LOSS_NAME `ccp` trains a CCPLoss (contrastive, 4
classes, 2 proxies each) with its proximal term: one step, then a CCP round (anchor, lambda, proxies
re-seeded by k-center from the model's embeddings of the batch, their slots reset), then the other steps.
Prints a JSON object: the loss on each side and the largest weight difference (all weights, memory,
seed states and CCP state included) after the SGD steps.
SGD, not Adam, so that a wrong gradient scale shows in the update instead of being normalised away.
"""

import json
import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from tfdml.ccp import CCPLoss, CCPRounds, ProximalTerm  # noqa: E402
from tfdml.distribute import get_strategy, synchronize_batchnorm  # noqa: E402
from tfdml.evaluation.callback import RetrievalValidation, embed_dataset  # noqa: E402
from tfdml.losses import CrossBatchMemory, get_loss  # noqa: E402
from tfdml.mixing import Metrix  # noqa: E402
from tfdml.models import DMLModel, EmbeddingHead, build_backbone  # noqa: E402


def make_model(loss_name: str, loss_args: dict) -> DMLModel:
    keras.utils.set_random_seed(0)
    backbone = build_backbone("small_cnn", (16, 16, 3), widths=(8, 16))
    synchronize_batchnorm(backbone)
    loss_args = dict(loss_args)
    memory_size, mixing = loss_args.pop("xbm", 0), loss_args.pop("mixing", None)
    proximal = None
    if loss_name == "ccp":
        loss, proximal = CCPLoss(get_loss("contrastive"), num_classes=4, proxies_per_class=2), ProximalTerm()
    else:
        loss = get_loss(loss_name, **loss_args)
    if memory_size:
        loss = CrossBatchMemory(loss, memory_size=memory_size, start_step=0)
    model = DMLModel(backbone, EmbeddingHead(8), loss, mixing=Metrix(**mixing) if mixing else None,
                     proximal=proximal)
    model.build((None, 16, 16, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.5), lr_multipliers={"loss": 2.0})
    return model


def train(model: DMLModel, images: np.ndarray, labels: np.ndarray, steps: int) -> float:
    data = tf.data.Dataset.from_tensors((images, labels))
    if not isinstance(model.metric_loss, CCPLoss):
        history = model.fit(data, epochs=steps, verbose=0)
        return float(history.history["loss"][-1])
    model.fit(data, epochs=1, verbose=0)
    # A CCP round as CCPRounds starts one after `patience` validations without improvement.
    validation = RetrievalValidation(None)
    # This epoch is the round's best: theta* and the k-center start are the current weights and proxies.
    model.proximal.rounds.track_round(0.5, model.network_variables(), model.metric_loss.proxies)
    # Pool images other than the batch's, embeddings shrunk into the unit ball: proxies at distance 0 from
    # the batch or on the ball's surface would sit where the loss is not differentiable (the distance's
    # root, the projection's max(|p|, 1)), and float noise between the two sides would pick the gradient.
    pool = tf.data.Dataset.from_tensors((np.random.default_rng(2).uniform(0, 255, images.shape), labels))
    def pool_fn(m, round_):
        return 0.8 * embed_dataset(m, pool)[0], labels

    rounds = CCPRounds(model.metric_loss, model.proximal, validation, pool_fn, lambda0=0.5, log=lambda _: None)
    rounds.set_model(model)
    rounds.new_round(epoch=0)
    history = model.fit(data, epochs=steps - 1, verbose=0)
    return float(history.history["loss"][-1])


def main() -> None:
    loss_name, loss_args, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (16, 16, 16, 3)).astype("float32")
    labels = np.repeat(np.arange(4), 4).astype("int32")

    single = make_model(loss_name, loss_args)
    strategy = get_strategy("mirrored")
    with strategy.scope():
        mirrored = make_model(loss_name, loss_args)
    mirrored.set_weights(single.get_weights())

    before = [w.copy() for w in single.get_weights()]
    loss_single = train(single, images, labels, steps)
    loss_mirrored = train(mirrored, images, labels, steps)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), before))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), mirrored.get_weights()))
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss_single": loss_single,
                      "loss_mirrored": loss_mirrored, "max_update": moved, "max_weight_diff": diff}))


if __name__ == "__main__":
    main()
