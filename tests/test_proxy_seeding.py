"""`loss.proxy_init: samples`: proxies start from the data, once, and a resumed run keeps its own."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from tfdml.ccp import table_pool
from tfdml.config import load_config
from tfdml.errors import ConfigError
from tfdml.evaluation.callback import embed_dataset
from tfdml.losses import unwrap
from tfdml.training import run
from tfdml.training.builders import build_data, build_model
from tfdml.training.proxy_seeding import SEED_POOL_SIZE, SeedProxies, class_seeds

ROOT = Path(__file__).resolve().parents[1]
TINY = ["sampler.batch_size=32", "train.steps_per_epoch=3", "model.backbone_args.widths=[8,16]",
        "model.embedding_dim=16", "eval.batch_size=512", "train.verbose=0", "train.epochs=2",
        "export.saved_model=false", "loss.name=proxy_anchor", "loss.args={}"]


def tiny_config(tmp_path: Path, *extra: str):
    return load_config(ROOT / "yaml_configs" / "emoji.yaml", [*TINY, f"output_dir={tmp_path}", *extra])


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_class_seeds_are_normalised_class_means_or_k_center_members():
    rng = np.random.default_rng(0)
    emb, labels = rng.normal(size=(30, 5)), np.repeat(np.arange(6), 5)
    means = class_seeds(emb, labels, num_classes=6, k=1)
    assert means.shape == (6, 1, 5)
    np.testing.assert_allclose(means[:, 0], unit(unit(emb).reshape(6, 5, 5).mean(axis=1)), atol=1e-6)
    picks = class_seeds(emb, labels, num_classes=6, k=3)
    for c in range(6):  # three distinct members of the class itself
        members = unit(emb[labels == c]).astype(np.float32)
        rows = [int(np.flatnonzero(np.all(np.isclose(members, p, atol=1e-6), axis=1))[0]) for p in picks[c]]
        assert len(set(rows)) == 3


def test_seeding_puts_each_proxy_at_its_class_mean_embedding(tmp_path):
    config = tiny_config(tmp_path, "loss.proxy_init=samples")
    data = build_data(config, log=lambda _: None)
    model = build_model(config, num_classes=data.train.num_classes)
    bank = unwrap(model.metric_loss).bank
    before = bank.proxies.numpy().copy()
    pool = table_pool(data.train, SEED_POOL_SIZE, lambda t: data.eval_dataset(t, config), seed=0)
    messages: list[str] = []
    seeding = SeedProxies(bank, pool, log=messages.append)
    seeding.set_model(model)
    seeding.on_train_begin()

    # Every emoji class has at most 4 training images (< SEED_POOL_SIZE): the pool is the whole split.
    embeddings, _ = embed_dataset(model, data.eval_dataset(data.train, config))
    dense = data.train.dense_labels()
    expected = unit(np.stack([unit(embeddings[dense == c]).mean(axis=0) for c in range(data.train.num_classes)]))
    np.testing.assert_allclose(bank.proxies.numpy(), expected, atol=1e-4)
    assert not np.allclose(before, expected, atol=1e-2)
    assert messages == [f"proxies seeded from the data (class means): {data.train.num_classes} classes x 1 from "
                        f"{len(data.train)} training images"]


def test_a_resumed_run_keeps_its_trained_proxies(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    class Proxies(keras.callbacks.Callback):  # the proxies when training (re)starts, after any seeding
        def on_train_begin(self, logs=None):
            self.at_start = unwrap(self.model.metric_loss).bank.proxies.numpy().copy()

    first, messages = Proxies(), []
    with pytest.raises(KeyboardInterrupt):
        run(tiny_config(tmp_path, "name=cut", "loss.proxy_init=samples"), log=messages.append,
            callbacks=[first, Interrupt()])
    assert sum("proxies seeded" in m for m in messages) == 1
    saved = keras.models.load_model(tmp_path / "cut" / "checkpoints" / "last.keras")
    trained = unwrap(saved.metric_loss).bank.proxies.numpy()
    assert not np.allclose(trained, first.at_start, atol=1e-6)  # epoch 1 moved them

    resumed, messages = Proxies(), []
    run(tiny_config(tmp_path, "name=cut", "loss.proxy_init=samples"), log=messages.append, callbacks=[resumed])
    assert any("resuming" in m for m in messages) and not any("proxies seeded" in m for m in messages)
    np.testing.assert_allclose(resumed.at_start, trained, atol=1e-6)


@pytest.mark.parametrize("extra, expected", [
    (["loss.name=multi_similarity"],
     r"multi_similarity has none: use one of .*proxy_anchor.*or loss.proxy_init=random"),
    (["loss.name=contrastive", "ccp.enabled=true"], r"CCP seeds its proxies itself .*set loss.proxy_init=random"),
])
def test_proxy_init_samples_where_it_cannot_act_is_one_clear_line(tmp_path, extra, expected):
    with pytest.raises(ConfigError, match=expected):
        run(tiny_config(tmp_path, "loss.proxy_init=samples", *extra), log=lambda _: None)
