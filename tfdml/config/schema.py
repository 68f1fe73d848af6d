"""The typed configuration of a training run.

Every YAML key maps to one field below; the defaults are the emoji demo's. Bounds and choices live in
each field's metadata so that the loader's errors can say what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union


def _f(default: Any, **meta: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    dataset: str = _f("emoji")
    root: Optional[str] = _f(None)
    reader_args: dict[str, Any] = _f({})
    image_size: int = _f(32, min=8, max=1024)
    eval_resize: Optional[int] = _f(None, min=8)  # short side before the evaluation centre crop (null: image_size)
    min_images: int = _f(2, min=1)
    test_fraction: float = _f(0.5, min=0.0, max=1.0)
    val_fraction: float = _f(0.1, min=0.0, max=1.0)
    split_seed: int = _f(0, min=0)
    cache_in_memory: bool = _f(True)  # keep the decoded validation images in memory between validations
    bbox_crop: bool = _f(False)  # crop to the dataset's bounding boxes where it has them
    skip_bad_images: bool = _f(False)  # drop missing or non-image files (counted in the log) instead of failing
    folds: int = _f(0, min=0)  # MLRC: >= 2 cuts the training classes into contiguous folds (0: off)
    fold: int = _f(0, min=0)  # the fold that validates


@dataclass
class SamplerConfig:
    batch_size: int = _f(128, min=2)
    m: int = _f(4, min=1)
    neighbourhood: int = _f(1, min=1)  # classes dealt together as look-alikes (1: classes drawn independently)


@dataclass
class AugmentConfig:
    crop_scale: tuple[float, float] = _f((0.6, 1.0))
    flip: bool = _f(False)
    brightness: float = _f(0.2, min=0.0, max=1.0)
    contrast: float = _f(0.2, min=0.0, max=1.0)
    saturation: float = _f(0.0, min=0.0, max=1.0)
    grayscale: float = _f(0.0, min=0.0, max=1.0)  # probability


@dataclass
class ModelConfig:
    backbone: str = _f("small_cnn")  # a registered backbone (checked against tfdml.models.BACKBONES)
    backbone_args: dict[str, Any] = _f({})
    backbone_weights: Optional[str] = _f(None)
    embedding_dim: int = _f(128, min=1)
    pooling: str = _f("avg+max", choices=("avg", "max", "avg+max"))
    freeze_batchnorm: bool = _f(False)
    freeze_until: Optional[str] = _f(None)  # freeze the backbone from its input through this layer
    # After training: false, `auto` or true (the shrinkage the validation classes rank first, or none if the
    # raw embeddings rank first) or a shrinkage in (0, 1] (tfdml.models.fit_whitening)
    whitening: Union[bool, float, str] = _f(False)
    # Inner backbone layers (e.g. conv_pw_11_relu) whose pooled features join the embedding in the whitening
    descriptor_layers: tuple[str, ...] = _f(())


@dataclass
class XbmConfig:
    memory_size: int = _f(0, min=0)  # embeddings kept; 0 = no cross-batch memory
    start_step: int = _f(1000, min=0)
    weight: float = _f(1.0, min=0.0)


@dataclass
class LossConfig:
    name: str = _f("multi_similarity")
    args: dict[str, Any] = _f({})
    xbm: XbmConfig = field(default_factory=XbmConfig)
    # Proxy losses: `samples` starts each class's proxy at its training images' mean embedding (random: Keras's init)
    proxy_init: str = _f("random", choices=("random", "samples"))


@dataclass
class MixingConfig:
    """Metrix (tfdml.mixing): `level: none` trains without mixing."""

    level: str = _f("none", choices=("none", "input", "feature", "embedding"))
    alpha: float = _f(2.0, min=1e-6)
    lambda_per: str = _f("batch", choices=("batch", "pair"))
    kinds: tuple[Literal["pos_neg", "anchor_neg", "neg_neg"], ...] = _f(("pos_neg", "anchor_neg", "neg_neg"))
    max_mixtures: int = _f(64, min=1)
    weight: float = _f(0.4, min=0.0)


@dataclass
class CCPConfig:
    """CCP (tfdml.ccp): rounds of a regularised multi-proxy loss around `loss`, re-seeded by k-center."""

    enabled: bool = _f(False)
    proxies_per_class: int = _f(8, min=1)  # K
    pool_size: int = _f(12, min=1)  # b: pool images per class at re-seeding
    lambda0: float = _f(2e-4, min=0.0)
    decay: float = _f(1.0, min=0.0)
    patience: int = _f(3, min=1)  # validations without improvement that start a new round
    stop_patience: int = _f(60, min=1)  # ... that end training
    w_pair: float = _f(0.1, min=0.0)
    w_proxy: float = _f(1.0, min=0.0)
    warmup_epochs: int = _f(0, min=0)  # epochs of the pair term alone before round 1 (0: the paper)


@dataclass
class OptimizerConfig:
    name: str = _f("adam", choices=("adam", "adamw", "sgd"))
    learning_rate: float = _f(1e-3, min=0.0)
    weight_decay: float = _f(1e-4, min=0.0)
    schedule: str = _f("cosine", choices=("constant", "cosine", "step"))
    warmup_epochs: int = _f(0, min=0)
    decay_epochs: int = _f(10, min=1)  # `step` schedule: multiply by decay_rate every decay_epochs
    decay_rate: float = _f(0.5, min=0.0, max=1.0)
    clipnorm: Optional[float] = _f(None, min=0.0)
    clipvalue: Optional[float] = _f(None, min=0.0)
    lr_multipliers: dict[str, float] = _f({"backbone": 1.0, "head": 1.0, "loss": 100.0}, keys=("backbone", "head", "loss"))


@dataclass
class TrainConfig:
    epochs: int = _f(40, min=1)
    steps_per_epoch: Optional[int] = _f(None, min=1)
    time_budget_s: Optional[float] = _f(None, min=0.0)
    # true: end after the last epoch that fits in the budget at the latest epoch's pace (training never overruns it)
    time_budget_strict: bool = _f(False)
    # With time_budget_s: after its second full epoch (past any head warm-up), shorten the run (and its cosine schedule) to the epochs that fit
    # in the budget at that pace, so the rate decays fully on a slower machine instead of being cut part-way.
    fit_schedule_to_budget: bool = _f(False)
    # XLA: `auto` times a few steps each way at the start of the run and keeps the faster (it can be
    # ~11x slower for depthwise convolutions on CPU, and faster for plain ones); true/false force it.
    jit_compile: Union[bool, str] = _f("auto", choices=(True, False, "auto"))
    head_warmup_epochs: int = _f(0, min=0)  # epochs training only the head and the loss's proxies, backbone frozen
    # Keras's: 0 silent, 1 progress bars, 2 one line per epoch; `auto` is 1 on a terminal and 2 when stdout is
    # not one (a log piped to a file gets no control codes). It also sets the embedding and search progress.
    verbose: Union[int, str] = _f("auto", choices=(0, 1, 2, "auto"))


@dataclass
class EvalConfig:
    ks: tuple[int, ...] = _f((1, 2, 4, 8))
    monitor: str = _f("map@r", choices=("map@r", "recall@1", "r_precision"))
    every_epochs: int = _f(1, min=1)
    batch_size: int = _f(256, min=1)
    backend: str = _f("auto", choices=("auto", "sklearn", "blockwise", "faiss"))
    nmi: bool = _f(False)


@dataclass
class ExportConfig:
    saved_model: bool = _f(True)


@dataclass
class Config:
    """A whole run. `name` names the run directory under `output_dir`."""

    name: str = _f("run")
    output_dir: str = _f("runs")
    seed: int = _f(0, min=0)
    distribute: str = _f("none", choices=("none", "mirrored", "multi_worker"))
    protocol: str = _f("conventional", choices=("conventional", "mlrc"))
    data: DataConfig = field(default_factory=DataConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    ccp: CCPConfig = field(default_factory=CCPConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


# Keys that may change between an interrupted run and its resumption without making the checkpoint
# belong to another experiment.
RESUMABLE_KEYS = ("train.epochs", "train.time_budget_s", "train.time_budget_strict", "train.verbose", "output_dir", "name",
                  "export.saved_model",
                  # NaN recovery: the resumed optimizers take the new rate and clipping (their state is kept)
                  "optimizer.learning_rate", "optimizer.clipnorm", "optimizer.clipvalue")
