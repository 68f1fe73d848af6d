"""Export an embedding model as a TensorFlow SavedModel for retrieval serving.

The SavedModel needs neither tfdml nor Keras to load (not run as a doctest: it needs an exported run):

    >>> import tensorflow as tf                                            # doctest: +SKIP
    >>> embedder = tf.saved_model.load("runs/emoji/saved_model")            # doctest: +SKIP
    >>> embeddings = embedder.serve(images)  # float32 [B, H, W, C] 0-255, any size  # doctest: +SKIP
    >>> embeddings = embedder.serve_uint8(images_uint8)  # the same from uint8 pixels  # doctest: +SKIP
    >>> embeddings = embedder.serve_bytes(tf.stack([tf.io.read_file("a.png")]))  # JPEG/PNG  # doctest: +SKIP
    >>> embedder.tfdml_kind[0].numpy()  # doctest: +SKIP
    b'embedding'

Every signature returns L2-normalised float32 embeddings `[B, dim]`; `serving_default` is `serve`.
Images of any size are resized and centre-cropped as evaluation does, and transparent pixels are
composited on white as in training (`tfdml.export.serving`); RGB batches already `S x S` pass as they are.
Every SavedModel tfdml writes carries its kind (`"embedding"` here, `"retrieval"` for
:func:`tfdml.export.export_retrieval_model`) as the one-variable collection `tfdml_kind`, and a
`manifest.json` in its directory with the kind, the input size and the evaluation preprocessing.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from tfdml.errors import ArtifactError

KIND_EMBEDDING = "embedding"
KIND_RETRIEVAL = "retrieval"
KIND_COLLECTION = "tfdml_kind"  # the loaded object's `tfdml_kind[0]` is the kind, a string variable
SIZE_COLLECTION = "tfdml_image_size"  # the side the model embeds at (inputs of any size are resized to it)
MANIFEST = "manifest.json"  # in the SavedModel's directory; TensorFlow ignores it
MANIFEST_FORMAT = 1


def export_saved_model(model: keras.Model, path: str | Path, image_size: int, resize: int | None = None) -> Path:
    """Write `model` (images -> embeddings) as a SavedModel at `path` and return the path.

    `resize` is the short side images are resized to before the centre crop of `image_size` in
    evaluation (`data.eval_resize`; None: `image_size`); it is recorded in the manifest so that
    `tfdml-eval` and `tfdml-search` preprocess as the run's evaluation did.

    Example (not run as a doctest: it needs a trained model):
        >>> export_saved_model(model, "runs/emoji/saved_model", image_size=32)  # doctest: +SKIP
        PosixPath('runs/emoji/saved_model')
    """
    path = Path(path)
    archive = keras.export.ExportArchive()
    archive.track(model)
    serve = add_image_endpoints(archive, model, image_size, resize, "serve")
    mark_kind(archive, KIND_EMBEDDING, image_size)
    manifest = base_manifest(KIND_EMBEDDING, image_size, resize, output_dim(serve))
    write_archive(archive, path, manifest)
    return path


def unit_embeddings(model: keras.Model, image_size: int) -> Callable[[Any], Any]:
    """Images -> L2-normalised embeddings: the model's own outputs when its head L2-normalises, else
    normalised here (a CCP head ends in the unit-ball projection, whose norms can be below 1).

    Example (not run as a doctest: it needs a trained model and images):
        >>> embed = unit_embeddings(model, 32)  # doctest: +SKIP
        >>> tf.norm(embed(images), axis=1)  # all 1  # doctest: +SKIP
    """
    embed = empty_safe(model, image_size)
    if getattr(getattr(model, "head", None), "normalize", "l2") == "l2":
        return embed
    return lambda images: tf.math.l2_normalize(embed(images), axis=1)


def add_image_endpoints(archive: Any, model: keras.Model, image_size: int, resize: int | None, name: str) -> Any:
    """Add `name` (float pixels), `name`_uint8 and `name`_bytes (encoded files) endpoints; return the first.

    All take any image size and 1-4 channels (`tfdml.export.serving`), so the SavedModel prepares
    images itself as evaluation does.
    """
    from tfdml.export.serving import ANY_IMAGES, ANY_UINT8_IMAGES, ENCODED_IMAGES, decode_images, prepare_images

    unit = unit_embeddings(model, image_size)

    def embed(images: tf.Tensor) -> tf.Tensor:
        return unit(prepare_images(images, image_size, resize))

    endpoint = archive.add_endpoint(name, embed, input_signature=[ANY_IMAGES])
    archive.add_endpoint(f"{name}_uint8", embed, input_signature=[ANY_UINT8_IMAGES])
    archive.add_endpoint(f"{name}_bytes", lambda images: unit(decode_images(images, image_size, resize)),
                         input_signature=[ENCODED_IMAGES])
    return endpoint


def empty_safe(model: keras.Model, image_size: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """`model(images, training=False)`, and an empty `[0, dim]` for a batch of 0 images (which BatchNorm's
    kernels reject with a shape error)."""
    probe = model(tf.zeros([1, image_size, image_size, 3]), training=False)
    dim, dtype = int(probe.shape[-1]), probe.dtype

    def embed(images: tf.Tensor) -> tf.Tensor:
        return tf.cond(tf.shape(images)[0] > 0, lambda: model(images, training=False),
                       lambda: tf.zeros([0, dim], dtype))

    return embed


def mark_kind(archive: Any, kind: str, image_size: int | None = None) -> None:
    """Record `kind` in an `ExportArchive` as the variable collection `tfdml_kind` (a public Keras API), and
    the side the model embeds at as `tfdml_image_size` (the signatures take any size, so they cannot tell)."""
    archive.add_variable_collection(KIND_COLLECTION, [tf.Variable(kind, trainable=False, name=KIND_COLLECTION)])
    if image_size is not None:
        archive.add_variable_collection(SIZE_COLLECTION, [tf.Variable(int(image_size), trainable=False,
                                                                      name=SIZE_COLLECTION)])


def output_dim(endpoint: Any) -> int:
    """The embedding size of a traced endpoint that returns `[B, dim]`."""
    return int(endpoint.get_concrete_function().structured_outputs.shape[-1])


def base_manifest(kind: str, image_size: int, resize: int | None, embedding_dim: int) -> dict[str, Any]:
    return {"format": MANIFEST_FORMAT, "kind": kind, "image_size": int(image_size),
            "resize": None if resize is None else int(resize), "embedding_dim": int(embedding_dim)}


def write_archive(archive: Any, path: Path, manifest: dict[str, Any],
                  extra: Callable[[Path], None] | None = None) -> None:
    """Write the SavedModel, its manifest and `extra(directory)`'s files next to `path`, then move it into place.

    An existing SavedModel at `path` is replaced only once the new one is complete, so an
    interrupted export never leaves half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    archive.write_out(str(staging), verbose=False)
    (staging / MANIFEST).write_text(manifest_text(manifest))
    if extra is not None:
        extra(staging)
    if path.is_dir() and not path.is_symlink():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(staging, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, path)


def manifest_text(manifest: dict[str, Any]) -> str:
    """JSON with one line per gallery row, so that a large gallery's manifest stays readable."""
    head = {k: v for k, v in manifest.items() if k != "gallery"}
    if "gallery" not in manifest:
        return json.dumps(head, indent=1) + "\n"
    rows = ",\n".join("  " + json.dumps(row) for row in manifest["gallery"])
    return json.dumps(head, indent=1)[:-2] + f',\n "gallery": [\n{rows}\n ]\n}}\n'


@dataclass
class ExportedModel:
    """A SavedModel that tfdml exported, loaded with plain `tf.saved_model.load`.

    Attributes:
        path: its directory.
        kind: `"embedding"` or `"retrieval"`.
        image_size: the side of the square images it takes.
        resize: the evaluation short side before the centre crop (None: `image_size`).
        manifest: `manifest.json` (empty for an embedding SavedModel from before manifests).
        obj: the loaded object (`serve` / `embed`, `search`).
    """

    path: Path
    kind: str
    image_size: int
    resize: int | None
    manifest: dict[str, Any] = field(repr=False)
    obj: Any = field(repr=False)

    @property
    def embed(self) -> Callable[[tf.Tensor], tf.Tensor]:
        """Images float32 `[B, S, S, 3]` (0-255) -> L2-normalised embeddings `[B, dim]`."""
        return self.obj.serve if self.kind == KIND_EMBEDDING else self.obj.embed

    @property
    def gallery(self) -> list[dict[str, Any]]:
        """A retrieval SavedModel's gallery rows (`id`, `path`, `label`, `class_name`); empty otherwise."""
        return list(self.manifest.get("gallery", []))

    def gallery_images(self) -> np.ndarray | None:
        """uint8 pixels `[N, H, W, C]` of a gallery that was held in memory (no files), else None."""
        name = self.manifest.get("gallery_images")
        if not name or not (self.path / name).is_file():
            return None
        with np.load(self.path / name) as data:
            return data["images"]


def load_exported(path: str | Path) -> ExportedModel:
    """Load a SavedModel that tfdml exported, and say what it is; ArtifactError for anything else.

    Example (not run as a doctest: it needs an exported run):
        >>> exported = load_exported("runs/emoji/retrieval_model")  # doctest: +SKIP
        >>> exported.kind, exported.image_size  # doctest: +SKIP
        ('retrieval', 32)
    """
    path = Path(path)
    hint = ("expected a SavedModel directory that tfdml exported: RUN_DIR/saved_model (embedding) or "
            "RUN_DIR/retrieval_model (retrieval); `tfdml-export RUN_DIR` writes both")
    if not path.exists():
        raise ArtifactError(f"{path} does not exist; {hint}")
    if path.is_file():
        what = "a Keras file" if path.suffix in (".keras", ".h5") else "a file"
        raise ArtifactError(f"{path} is {what}, not a SavedModel directory; {hint}")
    if not (path / "saved_model.pb").is_file():
        if (path / "config.yaml").is_file() and (path / "checkpoints").is_dir():
            raise ArtifactError(f"{path} is a run directory, not a SavedModel; pass {path / 'retrieval_model'} "
                                f"or {path / 'saved_model'} (`tfdml-export {path}` writes them)")
        raise ArtifactError(f"{path} is not a SavedModel (it has no saved_model.pb); {hint}")
    try:
        obj = tf.saved_model.load(str(path))
    except Exception as err:  # noqa: BLE001 - TensorFlow raises many kinds for a damaged SavedModel
        raise ArtifactError(f"{path} cannot be loaded as a SavedModel ({type(err).__name__}: "
                            f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}); {hint}") from None
    marker = getattr(obj, KIND_COLLECTION, None)
    signatures = dict(getattr(obj, "signatures", {}))
    if marker is not None and len(marker) == 1:
        kind = marker[0].numpy().decode()
    elif "serve" in signatures:  # exported before SavedModels carried their kind
        kind = KIND_EMBEDDING
    else:
        raise ArtifactError(f"{path} is a SavedModel but not one tfdml exported (no `tfdml_kind` marker and no "
                            f"`serve` signature; its signatures: {', '.join(signatures) or 'none'}); {hint}")
    if kind not in (KIND_EMBEDDING, KIND_RETRIEVAL):
        raise ArtifactError(f"{path} is a tfdml SavedModel of unknown kind {kind!r} (a newer tfdml?); "
                            f"expected {KIND_EMBEDDING!r} or {KIND_RETRIEVAL!r}")
    manifest: dict[str, Any] = {}
    if (path / MANIFEST).is_file():
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except ValueError as err:
            raise ArtifactError(f"{path / MANIFEST} is not valid JSON ({err}); re-export with tfdml-export") from None
    if kind == KIND_RETRIEVAL and "gallery" not in manifest:
        raise ArtifactError(f"{path} is a retrieval SavedModel without its {MANIFEST} (the gallery's paths and "
                            f"labels); copy it along with the SavedModel or re-export with tfdml-export")
    signature = signatures["serve" if kind == KIND_EMBEDDING else "embed"]
    size_marker = getattr(obj, SIZE_COLLECTION, None)
    takes = (int(size_marker[0].numpy()) if size_marker is not None and len(size_marker) == 1
             else signature.structured_input_signature[1]["images"].shape[1])  # before the marker: a fixed size
    image_size = int(manifest.get("image_size") or takes)
    if takes is not None and image_size != int(takes):
        raise ArtifactError(f"{path / MANIFEST} says image_size {image_size} but the SavedModel takes {takes} px "
                            f"images: the manifest belongs to another export; re-export with tfdml-export")
    return ExportedModel(path, kind, image_size, manifest.get("resize"), manifest, obj)
