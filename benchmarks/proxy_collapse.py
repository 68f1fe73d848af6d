"""Why proxy anchor fails from scratch on the emoji set: watch the embeddings and proxies epoch by epoch.

    .venv/bin/python benchmarks/proxy_collapse.py [--epochs 3] [--config emoji_proxy_anchor]
        [--variant NAME "key=value ..."]...

For each variant (default: proxy learning rate x1, x10, x100, network lr 1e-4 with x100, and
proxies seeded at the class means of the initial embeddings) it trains the config for a few epochs
and prints, after each, on the training images (evaluation preprocessing):

- `proxy acc`: how often an image's nearest proxy is its own class's (chance: 1 / classes);
- `train P@1`: retrieval among the training images themselves;
- `mean cos`: the mean cosine between two embeddings (1.0: everything at one point).

`--classifier` adds a control that involves no tfdml loss: the same backbone with global average
pooling and a plain `keras.layers.Dense` softmax over the training classes, trained on the same
batches with `keras.losses.SparseCategoricalCrossentropy`; its training accuracy says how far any
per-class parameter gets in this budget.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VARIANTS = {
    "proxy lr x1": ["optimizer.lr_multipliers.loss=1"],
    "proxy lr x10": [],
    "proxy lr x100": ["optimizer.lr_multipliers.loss=100"],
    "lr 1e-4, proxy lr x100": ["optimizer.learning_rate=1e-4", "optimizer.lr_multipliers.loss=100"],
    "proxies seeded at class means": ["+seed_proxies"],
}


def diagnose(config_name: str, name: str, overrides: list[str], epochs: int) -> None:
    import keras
    import numpy as np

    from tfdml.config import load_config
    from tfdml.evaluation import evaluate_retrieval
    from tfdml.evaluation.callback import embed_dataset
    from tfdml.evaluation.neighbours import l2_normalise
    from tfdml.training.builders import build_data, build_model, build_optimizer

    seed_proxies = "+seed_proxies" in overrides
    config = load_config(f"yaml_configs/{config_name}.yaml", [o for o in overrides if o != "+seed_proxies"])
    keras.utils.set_random_seed(config.seed)
    data = build_data(config, lambda *_: None)
    steps = len(data.sampler)
    model = build_model(config, num_classes=data.train.num_classes)
    model.compile(optimizer=build_optimizer(config, steps), lr_multipliers=config.optimizer.lr_multipliers)
    model.build_optimizers()
    train_eval, classes = data.eval_dataset(data.train, config), data.train.dense_labels()

    def probe(epoch: str, loss: float | None) -> None:
        embeddings, labels = embed_dataset(model, train_eval)
        e, p = l2_normalise(embeddings), l2_normalise(model.metric_loss.proxies.numpy())
        proxy_acc = float(((e @ p.T).argmax(1) % data.train.num_classes == classes).mean())
        total = e.sum(0)  # mean cosine over distinct pairs, without the N x N matrix
        mean_cos = float((total @ total - len(e)) / (len(e) * (len(e) - 1)))
        p1 = evaluate_retrieval(embeddings, labels, ks=(1,))["precision@1"]
        loss_txt = "" if loss is None else f"{loss:.2f}"
        print(f"| {name} | {epoch} | {loss_txt} | {proxy_acc:.3f} | {p1:.3f} | {mean_cos:.3f} |", flush=True)

    probe("init", None)
    if seed_proxies:  # every proxy of a class at the class mean of the untrained embeddings
        e, _ = embed_dataset(model, train_eval)
        means = np.stack([e[classes == c].mean(0) for c in range(data.train.num_classes)])
        k = model.metric_loss.proxies.shape[0] // len(means)
        model.metric_loss.proxies.assign(np.tile(means, (k, 1)).astype("float32"))
        probe("seeded", None)
    stream = data.train_dataset(config, 0)
    for epoch in range(epochs):
        history = model.fit(stream, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps, verbose=0)
        probe(str(epoch + 1), history.history["loss"][-1])


def classifier(config_name: str, epochs: int) -> None:
    import keras

    from tfdml.config import load_config
    from tfdml.training.builders import build_data, build_model

    config = load_config(f"yaml_configs/{config_name}.yaml")
    keras.utils.set_random_seed(config.seed)
    data = build_data(config, lambda *_: None)
    backbone = build_model(config, num_classes=data.train.num_classes).backbone
    images = keras.Input((config.data.image_size, config.data.image_size, 3))
    logits = keras.layers.Dense(data.train.num_classes)(keras.layers.GlobalAveragePooling2D()(backbone(images)))
    model = keras.Model(images, logits)
    model.compile(keras.optimizers.Adam(config.optimizer.learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = model.fit(data.train_dataset(config, 0), epochs=epochs, steps_per_epoch=len(data.sampler), verbose=0)
    print(f"\nKeras softmax classifier, {data.train.num_classes} classes (chance {1 / data.train.num_classes:.4f}):")
    print("| epoch | train loss | train accuracy (augmented batches) |\n|---|---|---|")
    for epoch, (loss, acc) in enumerate(zip(history.history["loss"], history.history["accuracy"]), 1):
        print(f"| {epoch} | {loss:.3f} | {acc:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="emoji_proxy_anchor")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "OVERRIDES"),
                        help='e.g. --variant "alpha 16" "loss.args.alpha=16" (replaces the default variants)')
    parser.add_argument("--classifier", action="store_true", help="also train the plain Keras softmax control")
    args = parser.parse_args()
    variants = {name: o.split() for name, o in args.variant} if args.variant else VARIANTS
    print("| variant | epoch | train loss | proxy acc | train P@1 | mean cos |\n|---|---|---|---|---|---|")
    for name, overrides in variants.items():
        diagnose(args.config, name, overrides, args.epochs)
    if args.classifier:
        classifier(args.config, args.epochs)


if __name__ == "__main__":
    main()
