"""`DMLModel`: backbone + embedding head + metric loss, with a short custom `train_step`.

Example (a notebook):
    >>> import keras, tfdml
    >>> model = tfdml.models.DMLModel(
    ...     backbone=tfdml.models.build_backbone("small_cnn", (32, 32, 3)),
    ...     head=tfdml.models.EmbeddingHead(128),
    ...     loss=tfdml.losses.MultiSimilarityLoss())
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-3), lr_multipliers={"loss": 100.0})
    >>> # model.fit(train_ds, epochs=10)   # train_ds yields (images 0-255, integer labels)
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfdml.distribute import gather_across_replicas, num_replicas, per_replica_logs, replica_scale
from tfdml.losses.base import MetricLoss
from tfdml.losses.capabilities import supports
from tfdml.models.habits import as_rgb, first_labels, refuse_compile_arguments, warn_without_positive_pairs
from tfdml.models.head import EmbeddingHead
from tfdml.models.optim import at_scale, scaled_clone, skip_together
from tfdml.models.registry import all_layers
from tfdml.models.taps import descriptor_channels, tap_backbone

PARAMETER_GROUPS = ("backbone", "head", "loss")


@keras.saving.register_keras_serializable(package="tfdml")
class DMLModel(keras.Model):
    """Images (RGB pixel values 0-255, uint8 or float) -> L2-normalised embeddings.

    The backbone/head split is explicit (`features`, then `embed`) so that methods which act on the
    feature map (Metrix's feature-level mixing) need no second model class. The metric loss is a
    layer of the model: its trainable parameters (proxies) form the `loss` parameter group and are
    saved, restored and exported with everything else. Optional components: `mixing`
    (`tfdml.mixing.Metrix`, adds a mixed loss to training steps) and `proximal`
    (`tfdml.ccp.ProximalTerm`, CCP's `(lambda/2)||theta - theta*||^2` over the backbone and head).
    `descriptor_layers`: inner backbone layers whose pooled feature maps the head's whitening appends at
    inference (`EmbeddingHead`, `tfdml.models.tap_backbone`; training steps do not see them).

    Training steps log `loss` (the metric loss plus Metrix's weighted mixed loss: what validation,
    checkpoints and the NaN guard read) and its terms, each as it enters the objective: `loss_pair`
    (the clean metric loss), the loss's own parts (`loss_proxy` under CCP, `loss_memory` with a
    cross-batch memory; parts of `loss_pair`), `loss_mix` (Metrix's `weight * L_mix`) and `proximal`
    (CCP's penalty, which the gradient sees but `loss` leaves out).
    """

    def __init__(self, backbone: keras.Model, head: EmbeddingHead, loss: MetricLoss, mixing: Any = None,
                 proximal: Any = None, descriptor_layers: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        self.descriptor_layers = list(descriptor_layers)
        if len(self.descriptor_layers) != len(head.descriptor_dims):
            raise ValueError(f"{len(self.descriptor_layers)} descriptor layers but the head takes "
                             f"{len(head.descriptor_dims)} (EmbeddingHead(descriptor_dims=...))")
        # Inference only, sharing the backbone's layers; set past Keras's tracking so that the weights are
        # saved once, under `backbone`, and checkpoints keep their layout.
        object.__setattr__(self, "_tapped", tap_backbone(backbone, self.descriptor_layers)
                           if self.descriptor_layers else None)
        if self._tapped is not None and descriptor_channels(self._tapped) != head.descriptor_dims:
            raise ValueError(f"the descriptor layers {self.descriptor_layers} have {descriptor_channels(self._tapped)} "
                             f"channels; the head was built for {head.descriptor_dims}")
        self.head = head
        self.metric_loss = loss
        self.mixing = mixing  # e.g. tfdml.mixing.Metrix: adds `weight * L_mix` to training steps
        self.proximal = proximal  # e.g. tfdml.ccp.ProximalTerm: adds (lambda/2)||theta - theta*||^2
        self.lr_multipliers: dict[str, float] = {}
        self.group_optimizers: dict[str, keras.optimizers.Optimizer] = {}
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.term_trackers = {name: keras.metrics.Mean(name=name) for name in self.term_names()}

    # ------------------------------------------------------------------ forward

    def features(self, images: Any, training: bool = False) -> Any:
        return self.backbone(ops.cast(images, self.compute_dtype), training=training)

    def embed(self, features: Any, training: bool = False) -> Any:
        return self.head(features, training=training)

    def call(self, images: Any, training: bool = False) -> Any:
        if training or self._tapped is None:
            return self.embed(self.features(images, training), training)
        features, *taps = self._tapped(ops.cast(images, self.compute_dtype), training=False)
        return self.head(features, training=False, taps=taps)

    def build(self, input_shape: tuple) -> None:
        if not self.head.built:  # a deserialised head arrives built
            self.head.build(self.backbone.compute_output_shape(input_shape))
        if not self.metric_loss.built:
            self.metric_loss.build((input_shape[0], self.head.dim))
        if self.proximal is not None and not self.proximal.anchors:
            # CCP's round best keeps the proxies too: the next round's k-center starts from them.
            proxies = self.metric_loss.proxies if supports(self.metric_loss, "has_proxies") else None
            self.proximal.build_for(self.network_variables(), proxies)
        self.built = True

    # ------------------------------------------------------------------ parameter groups

    def parameter_groups(self) -> dict[str, list]:
        """Trainable variables by group name: `backbone`, `head` and `loss` (e.g. proxies)."""
        return {
            "backbone": list(self.backbone.trainable_variables),
            "head": list(self.head.trainable_variables),
            "loss": list(self.metric_loss.trainable_variables),
        }

    def network_variables(self) -> list:
        """The network's trainable weights (`backbone` and `head` groups): what CCP's proximal term covers."""
        groups = self.parameter_groups()
        return groups["backbone"] + groups["head"]

    def compile(self, optimizer: Any = "adam", lr_multipliers: Mapping[str, float] | None = None, **kwargs: Any) -> None:
        """Compile with one optimizer whose learning rate each group scales by its multiplier.

        `lr_multipliers` maps group names (`backbone`, `head`, `loss`) to factors; missing groups use 1.
        Proxies commonly learn 100x faster: `lr_multipliers={"loss": 100.0}`.
        """
        refuse_compile_arguments(kwargs)
        super().compile(optimizer=optimizer, **kwargs)
        unknown = set(lr_multipliers or {}) - set(PARAMETER_GROUPS)
        if unknown:
            raise ValueError(f"unknown parameter group(s) {sorted(unknown)}; groups are {', '.join(PARAMETER_GROUPS)}")
        self.lr_multipliers = {g: float((lr_multipliers or {}).get(g, 1.0)) for g in PARAMETER_GROUPS}
        self.group_optimizers = {
            group: scaled_clone(self.optimizer, factor)
            for group, factor in self.lr_multipliers.items()
            if factor != 1.0
        }

    def optimizer_for(self, group: str) -> keras.optimizers.Optimizer:
        return self.group_optimizers.get(group, self.optimizer)

    def build_optimizers(self) -> None:
        """Create each optimizer's slots for its own groups only (also needed before loading a
        checkpoint's optimizer state). Keras would otherwise build `self.optimizer` on every variable."""
        partition = self._optimizer_partition()
        for optimizer in [self.optimizer, *self.group_optimizers.values()]:
            if not optimizer.built:
                optimizer.build(partition.get(optimizer, []))

    def fit(self, x: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not self.built:
            self.build(_input_shape(x))
        self.build_optimizers()
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a dataset orders itself (our sampler does)
        warn_without_positive_pairs(self, first_labels(x, args[0] if args else kwargs.get("y"),
                                                       kwargs.get("batch_size")))
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x: Any = None, y: Any = None, *args: Any, ks: tuple[int, ...] = (1, 2, 4, 8),
                 backend: str = "auto", **kwargs: Any) -> Any:
        """Retrieval metrics (recall@k, precision@1, r_precision, map@r) of a labelled dataset or arrays.

        Every image searches all others by cosine similarity (`tfdml.evaluation.evaluate_retrieval`);
        a batch loss would say little about retrieval. `fit(validation_data=...)` keeps Keras's loss.

        Example (not run as a doctest: it needs a model and a validation table):
            >>> model.evaluate(eval_dataset(val, image_size=32, batch_size=256))  # doctest: +SKIP
            {'recall@1': 0.61, ..., 'map@r': 0.45}
        """
        if kwargs.get("_use_cached_eval_dataset"):  # fit's validation_data
            return super().evaluate(x, y, *args, **kwargs)
        from tfdml.evaluation import evaluate_retrieval
        from tfdml.evaluation.callback import embed_dataset

        if isinstance(x, tf.data.Dataset):
            embeddings, labels = embed_dataset(self, x, verbose=kwargs.get("verbose", 0))
        elif y is not None:
            embeddings, labels = self.predict(x, batch_size=kwargs.get("batch_size"), verbose=0), np.asarray(y)
        else:
            raise ValueError("DMLModel.evaluate needs labels: a dataset of (images, labels) or evaluate(images, labels); "
                             "it returns retrieval metrics (tfdml.evaluation.evaluate_retrieval)")
        return evaluate_retrieval(embeddings, labels, ks=ks, backend=backend)
    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Skip Keras's symbolic build when it has nothing to build (workaround for keras-team/keras#20585).

        Keras 3's TF trainer fetches a first batch in `fit`/`evaluate` and `strategy.reduce`s it to
        trace the model symbolically; under `MultiWorkerMirroredStrategy` that reduction fails
        ("Attempt to convert a value (PerReplica...)"). `fit` builds the model and its optimizers
        first, and DMLModel compiles no Keras losses or metrics, so the symbolic build would be a
        no-op: skipping it is exact, and spares a batch from the input pipeline.
        """
        optimizers = [self.optimizer, *self.group_optimizers.values()] if self.optimizer is not None else []
        if (all(layer.built for layer in all_layers(self)) and all(o.built for o in optimizers)
                and getattr(self, "_compile_loss", None) is None and getattr(self, "_compile_metrics", None) is None):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _optimizer_partition(self) -> dict[keras.optimizers.Optimizer, list]:
        partition: dict[keras.optimizers.Optimizer, list] = {}
        for group, variables in self.parameter_groups().items():
            partition.setdefault(self.optimizer_for(group), []).extend(variables)
        return partition

    def apply_gradients(self, gradients: list, variables: list) -> None:
        """Send each gradient (of the loss scaled by `self.optimizer.scale_loss`) to the optimizer of its
        variable's parameter group, at that optimizer's loss scale (`tfdml.models.optim.at_scale`)."""
        by_variable = {id(v): g for g, v in zip(gradients, variables) if g is not None}
        partition, loss_scale = self._optimizer_partition(), self.optimizer.scale_loss(1.0)
        by_variable = skip_together(by_variable, list(partition))
        for optimizer, group_vars in partition.items():
            pairs = [(by_variable[id(v)], v) for v in group_vars if id(v) in by_variable]
            if pairs:
                optimizer.apply(at_scale([g for g, _ in pairs], optimizer, loss_scale), [v for _, v in pairs])

    # ------------------------------------------------------------------ steps

    def term_names(self) -> list[str]:
        """The names of the loss terms training steps log besides `loss` (see the class docstring)."""
        names = ["loss_pair", *(f"loss_{part}" for part in self.metric_loss.part_names)]
        return names + ["loss_mix"] * (self.mixing is not None) + ["proximal"] * (self.proximal is not None)

    def compute_metric_loss(self, images: Any, labels: Any, training: bool) -> Any:
        """The loss of the global batch (under `tf.distribute`, embeddings are gathered from all replicas),
        plus the mixing loss in training steps when the model has a `mixing` component."""
        return self.compute_loss_terms(images, labels, training)["loss"]

    def compute_loss_terms(self, images: Any, labels: Any, training: bool) -> dict[str, Any]:
        """`compute_metric_loss` as `{"loss": ..., "loss_pair": ..., ...}`: the loss and its terms by name."""
        features = self.features(images, training)
        embeddings = self.embed(features, training)
        global_embeddings, global_labels = gather_across_replicas(embeddings, labels)
        loss, parts = self.metric_loss(global_embeddings, global_labels, training=training, return_parts=True)
        terms = {"loss": loss, "loss_pair": loss, **{f"loss_{name}": value for name, value in parts.items()}}
        if training and self.mixing is not None:
            # Under tf.distribute every replica mixes the global batch (the level's tensors gathered): the
            # same pairs and lambdas everywhere (one seed state), so N replicas mix as one device.
            level = getattr(self.mixing, "level", None)
            if num_replicas() > 1 and level == "input":
                images = gather_across_replicas(images)[0]
            if num_replicas() > 1 and level == "feature":
                features = gather_across_replicas(features)[0]
            mixed = self.mixing.mixed_loss(self, self.metric_loss, images, features, global_embeddings,
                                           global_labels, training)
            terms["loss_mix"] = self.mixing.weight * mixed
            terms["loss"] = loss + terms["loss_mix"]
        return terms

    def train_step(self, data: Any) -> dict:
        images, labels = data
        with tf.GradientTape() as tape:
            terms = self.compute_loss_terms(images, labels, training=True)
            total = terms["loss"] + ops.sum(self.losses) if self.losses else terms["loss"]
            if self.proximal is not None:
                terms["proximal"] = self.proximal.penalty(self.network_variables())
                total = total + terms["proximal"]
            total = total * replica_scale()  # replicas' gradients are summed
            scaled = self.optimizer.scale_loss(total)  # mixed precision: float16 gradients must not underflow
        self.apply_gradients(tape.gradient(scaled, self.trainable_variables), self.trainable_variables)
        self.loss_tracker.update_state(terms.pop("loss"))
        for name, value in terms.items():
            self.term_trackers[name].update_state(value)
        return per_replica_logs({metric.name: metric.result() for metric in self.metrics})

    def test_step(self, data: Any) -> dict:
        images, labels = data
        self.loss_tracker.update_state(self.compute_metric_loss(images, labels, training=False))
        return per_replica_logs({"loss": self.loss_tracker.result()})

    def predict_step(self, data: Any) -> Any:
        images = data[0] if isinstance(data, (tuple, list)) else data
        return self(as_rgb(images), training=False)  # RGBA and grey composited on white, as in training

    @property
    def metrics(self) -> list:
        return [self.loss_tracker, *self.term_trackers.values()]

    # ------------------------------------------------------------------ serialisation

    def build_from_config(self, config: dict) -> None:
        self.build(config["input_shape"])

    def get_compile_config(self) -> dict | None:
        if not self.compiled:
            return None
        return {"optimizer": keras.saving.serialize_keras_object(self.optimizer), "lr_multipliers": self.lr_multipliers,
                "jit_compile": self.jit_compile}

    def compile_from_config(self, config: dict) -> None:
        self.compile(optimizer=keras.saving.deserialize_keras_object(config["optimizer"]),
                     lr_multipliers=config["lr_multipliers"], jit_compile=config.get("jit_compile", False))
        if self.built:
            self.build_optimizers()  # so that the file's optimizer state has slots to load into

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "head": keras.saving.serialize_keras_object(self.head),
            "loss": keras.saving.serialize_keras_object(self.metric_loss),
            "mixing": keras.saving.serialize_keras_object(self.mixing) if self.mixing is not None else None,
            "proximal": keras.saving.serialize_keras_object(self.proximal) if self.proximal is not None else None,
            "descriptor_layers": self.descriptor_layers,
        }

    @classmethod
    def from_config(cls, config: dict) -> "DMLModel":
        config = dict(config)
        parts = {k: keras.saving.deserialize_keras_object(config.pop(k)) for k in ("backbone", "head", "loss")}
        optional = {k: keras.saving.deserialize_keras_object(v) if v else None
                    for k, v in ((k, config.pop(k, None)) for k in ("mixing", "proximal"))}
        return cls(**parts, **optional, **config)


def _input_shape(x: Any) -> tuple:
    """The image batch shape of `fit`'s `x`: a tf.data dataset of (images, labels) or an array."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        return tuple((spec[0] if isinstance(spec, tuple) else spec).shape)
    return tuple(ops.shape(x))
