"""Export an embedding model as a TensorFlow SavedModel for retrieval serving.

The SavedModel needs neither tfdml nor Keras to load:

    >>> import tensorflow as tf                                            # doctest: +SKIP
    >>> embedder = tf.saved_model.load("runs/emoji/saved_model")            # doctest: +SKIP
    >>> embeddings = embedder.serve(images)  # float32 [B, S, S, 3], RGB pixel values 0-255
    >>> embeddings = embedder.serve_uint8(images_uint8)  # the same from uint8 pixels

Both signatures return L2-normalised float32 embeddings `[B, dim]`; `serving_default` is `serve`.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf


def export_saved_model(model: keras.Model, path: str | Path, image_size: int) -> Path:
    """Write `model` (images -> embeddings) as a SavedModel at `path` and return the path."""
    path = Path(path)
    shape = [None, image_size, image_size, 3]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve", lambda images: model(images, training=False), input_signature=[tf.TensorSpec(shape, tf.float32, name="images")]
    )
    archive.add_endpoint(
        "serve_uint8",
        lambda images: model(tf.cast(images, tf.float32), training=False),
        input_signature=[tf.TensorSpec(shape, tf.uint8, name="images")],
    )
    archive.write_out(str(path), verbose=False)
    return path
