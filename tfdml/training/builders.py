"""Config -> objects: data splits and pipelines, the model, the optimizer."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from tfdml.ccp import CCP
from tfdml.config import Config
from tfdml.data import (DatasetTable, MPerClassSampler, eval_dataset, read_dataset, split_classes, train_dataset,
                        validate_images)
from tfdml.data.pipeline import find_bad_images
from tfdml.data.split import fold_split
from tfdml.distribute import num_replicas, synchronize_batchnorm
from tfdml.errors import ConfigError
from tfdml.losses import CrossBatchMemory, MetricLoss, get_loss, losses_supporting, supports
from tfdml.mixing import Metrix
from tfdml.models import DMLModel, EmbeddingHead, build_backbone, descriptor_channels, tap_backbone
from tfdml.models.registry import freeze_fixed_parts


@dataclass
class Data:
    """A run's class-disjoint tables and its training pipeline."""

    table: DatasetTable
    train: DatasetTable
    val: DatasetTable
    test: DatasetTable
    sampler: MPerClassSampler

    def train_dataset(self, config: Config, start_step: int = 0) -> tf.data.Dataset:
        aug = config.augment
        return train_dataset(
            self.train, self.sampler, image_size=config.data.image_size, seed=config.seed, start_step=start_step,
            crop_scale=aug.crop_scale, flip=aug.flip, brightness=aug.brightness, contrast=aug.contrast,
            saturation=aug.saturation, grayscale=aug.grayscale, bbox_crop=config.data.bbox_crop,
        )

    def eval_dataset(self, table: DatasetTable, config: Config, cache: bool = False) -> tf.data.Dataset:
        return eval_dataset(table, image_size=config.data.image_size, batch_size=config.eval.batch_size,
                            bbox_crop=config.data.bbox_crop, resize=config.data.eval_resize, cache=cache)

    def summary(self) -> str:
        parts = [f"{name} {t.num_classes} classes / {len(t)} images"
                 for name, t in (("train", self.train), ("val", self.val), ("test", self.test))]
        return "; ".join(parts)


def build_table(config: Config, log: Callable[[str], None] = print) -> DatasetTable:
    """The dataset of `config.data`, checked and split into classes: every row has its `split`.

    The same rows and splits on every call with the same config (`tfdml-eval` and `tfdml-export`
    rebuild a run's test split with it).
    """
    cfg = config.data
    table = read_dataset(cfg.dataset, root=cfg.root, **cfg.reader_args)
    if cfg.skip_bad_images:  # decodes every file (in parallel, cached per file list)
        bad = find_bad_images(table, decode=True)
        if bad:
            listed = "; ".join(reason for _, reason in bad[:3]) + ("; ..." if len(bad) > 3 else "")
            log(f"skipping {len(bad)} of {len(table)} images that cannot be read (data.skip_bad_images): {listed}")
            table = table.select(np.setdiff1d(np.arange(len(table)), [row for row, _ in bad]))
    validate_images(table)  # name unreadable files now, not mid-epoch
    read = table
    table = split_classes(table, test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction,
                          min_images=cfg.min_images, seed=cfg.split_seed, keep_split=True)
    dropped = np.setdiff1d(np.unique(read.label), np.unique(table.label))
    if len(dropped):
        log(f"dropped {len(dropped)} classes with fewer than data.min_images={cfg.min_images} images "
            f"({len(read) - len(table)} images), e.g. '{read.class_names[dropped[0]]}'")
    if cfg.folds:  # MLRC: validate on one contiguous fold of the training classes
        table = fold_split(table, cfg.folds, cfg.fold)
    return table


def build_data(config: Config, log: Callable[[str], None] = print) -> Data:
    table = build_table(config, log)
    if not config.data.skip_bad_images:  # a bad evaluation image fails now, not after training
        validate_images(table.select(np.isin(table.split, ("val", "test"))), decode=True)
    train = table.subset("train")
    sampler = MPerClassSampler(train.label, m=config.sampler.m, batch_size=config.sampler.batch_size, seed=config.seed,
                               neighbourhood=config.sampler.neighbourhood)
    return Data(table, train, table.subset("val"), table.subset("test"), sampler)


@contextlib.contextmanager
def _values_of(section: str) -> Iterator[None]:
    """A component built from `section` that rejects a value (ValueError) names the config keys to fix."""
    try:
        yield
    except (ValueError, TypeError) as err:  # TypeError: e.g. a string where a list of numbers belongs
        raise ConfigError(f"{section}: {err}") from err


def build_model(config: Config, num_classes: int | None = None, ccp: CCP | None = None) -> DMLModel:
    """The model of `config`; `num_classes` (training classes) sizes proxy losses unless `loss.args` sets it.

    Under `ccp.enabled` the model holds `ccp`'s loss and proximal term (`build_ccp(config, num_classes)`
    unless given: pass the one whose round callback the run uses). Build it inside `strategy.scope()`
    to distribute it; BatchNorm then uses global-batch statistics.
    """
    cfg = config.model
    size = config.data.image_size
    with _values_of("model.backbone_args"):
        backbone = build_backbone(cfg.backbone, (size, size, 3), weights=cfg.backbone_weights, **cfg.backbone_args)
    freeze_fixed_parts(backbone, cfg.freeze_until, cfg.freeze_batchnorm)
    if num_replicas() > 1:
        synchronize_batchnorm(backbone)
    # CCP normalises by the unit-ball projection alone (its supplement); an L2 head would make it a no-op.
    normalize = "unit_ball" if config.ccp.enabled else "l2"
    whitening = whitening_setting(config) is not None
    descriptor_dims = descriptor_layer_channels(config, backbone)
    head = EmbeddingHead(cfg.embedding_dim, pooling=cfg.pooling, normalize=normalize, whitening=whitening,
                         descriptor_dims=descriptor_dims, name="head")
    if config.ccp.enabled and ccp is None:
        ccp = build_ccp(config, num_classes)
    loss = ccp.loss if ccp is not None else build_loss(config, num_classes)
    model = DMLModel(backbone, head, loss, mixing=build_mixing(config), proximal=ccp.proximal if ccp is not None else None,
                     descriptor_layers=cfg.descriptor_layers, name="dml_model")
    model.build((None, size, size, 3))
    return model


def descriptor_layer_channels(config: Config, backbone: Any) -> list[int]:
    """The channels of `model.descriptor_layers` in `backbone`, checked (ConfigError: one line)."""
    layers = list(config.model.descriptor_layers)
    if not layers:
        return []
    if whitening_setting(config) is None:
        raise ConfigError(f"model.descriptor_layers {layers} join the embedding through the learned whitening; set "
                          "model.whitening: auto (or a shrinkage), or descriptor_layers: []")
    with _values_of("model.descriptor_layers"):
        return descriptor_channels(tap_backbone(backbone, layers))


def whitening_setting(config: Config) -> float | str | None:
    """`model.whitening` checked: None (off), `"auto"` (also `true`) or a shrinkage in (0, 1]."""
    value = config.model.whitening
    if value is False:
        return None
    if value is True:
        value = "auto"
    if value != "auto" and (isinstance(value, str) or not 0.0 < value <= 1.0):
        raise ConfigError(f"model.whitening is {value!r}; expected false, auto (chosen on the validation classes) or a "
                          "shrinkage in (0, 1], e.g. 0.2")
    if config.ccp.enabled:
        raise ConfigError("model.whitening and ccp.enabled: whitening acts on unit-length embeddings and CCP's head "
                          "projects onto the unit ball; set model.whitening=false")
    return value


def build_loss(config: Config, num_classes: int | None = None) -> MetricLoss:
    """`loss.name` with `loss.args`, wrapped in a cross-batch memory when `loss.xbm.memory_size > 0`
    (CCP's objective around it comes from `build_ccp`)."""
    loss_args = dict(config.loss.args)
    if config.loss.proxy_init == "samples":
        if config.ccp.enabled:
            raise ConfigError("loss.proxy_init=samples and ccp.enabled: CCP seeds its proxies itself (k-center from "
                              "samples at round 1); set loss.proxy_init=random")
        if not supports(config.loss.name, "has_proxies"):
            raise ConfigError(f"loss.proxy_init=samples seeds a proxy loss's proxies, and {config.loss.name} has none: "
                              f"use one of {', '.join(losses_supporting('has_proxies'))}, or loss.proxy_init=random")
    if supports(config.loss.name, "has_proxies"):  # proxy losses are sized by the training classes
        loss_args.setdefault("num_classes", num_classes)
    with _values_of("loss.args"):
        loss = get_loss(config.loss.name, **loss_args)
    xbm = config.loss.xbm
    if xbm.memory_size:
        loss = CrossBatchMemory(loss, memory_size=xbm.memory_size, start_step=xbm.start_step, weight=xbm.weight)
    return loss


def proxy_rate_warning(config: Config) -> str | None:
    """A warning when a proxy loss fine-tunes a pretrained backbone with a head faster than the backbone:
    with the head at x10 and proxies at x100, proxy anchor collapsed once the backbone unfroze
    (benchmarks/RESULTS.md, "Why proxy anchor collapsed"); the Proxy Anchor paper trains the head at x1."""
    head = config.optimizer.lr_multipliers.get("head", 1.0)
    if config.model.backbone_weights and supports(config.loss.name, "has_proxies") and head > 1.0:
        return (f"warning: {config.loss.name} has proxies and optimizer.lr_multipliers.head={head:g} on a pretrained "
                "backbone; with a head this fast proxy anchor collapsed in tfdml's probes once the backbone unfroze. "
                "optimizer.lr_multipliers.head=1 with train.head_warmup_epochs=1 trains it "
                "(yaml_configs/emoji_pretrained_proxy.yaml)")
    return None


def build_ccp(config: Config, num_classes: int | None) -> CCP | None:
    """CCP of `config.ccp` around `build_loss(config)`, or None unless `ccp.enabled`."""
    if not config.ccp.enabled:
        return None
    return CCP.from_config(config.ccp, build_loss(config, num_classes), num_classes)


def build_mixing(config: Config) -> Metrix | None:
    """The Metrix component of `config.mixing`, or None for `level: none`."""
    cfg = config.mixing
    if cfg.level == "none":
        return None
    return Metrix(level=cfg.level, alpha=cfg.alpha, lambda_per=cfg.lambda_per, kinds=cfg.kinds,
                  max_mixtures=cfg.max_mixtures, weight=cfg.weight, seed=config.seed)


def build_optimizer(config: Config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    cfg = config.optimizer
    total = max(1, config.train.epochs * steps_per_epoch)
    warmup = min(cfg.warmup_epochs * steps_per_epoch, total - 1)
    rate: float | keras.optimizers.schedules.LearningRateSchedule = cfg.learning_rate
    if cfg.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else cfg.learning_rate, decay_steps=total - warmup,
            warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup,
        )
    elif cfg.schedule == "step":
        rate = keras.optimizers.schedules.ExponentialDecay(
            cfg.learning_rate, decay_steps=cfg.decay_epochs * steps_per_epoch, decay_rate=cfg.decay_rate, staircase=True)
    if cfg.clipnorm is not None and cfg.clipvalue is not None:
        raise ConfigError(f"optimizer.clipnorm={cfg.clipnorm} and optimizer.clipvalue={cfg.clipvalue}: Keras "
                          "optimizers clip one way only; set the other to null")
    common = {"learning_rate": rate, "clipnorm": cfg.clipnorm, "clipvalue": cfg.clipvalue}
    if cfg.name == "sgd":
        return keras.optimizers.SGD(momentum=0.9, weight_decay=cfg.weight_decay or None, **common)
    if cfg.name == "adamw":
        return keras.optimizers.AdamW(weight_decay=cfg.weight_decay, **common)
    return keras.optimizers.Adam(weight_decay=cfg.weight_decay or None, **common)
