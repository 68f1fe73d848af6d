"""Serving-side preprocessing traced into exported SavedModels: any image size, 1-4 channels, or encoded bytes.

Arrays `[B, H, W, C]` (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA; values 0-255) have transparent
pixels composited on white and are resized as evaluation resizes files: short side to `resize`
(default `image_size`), then a centre crop of `image_size`. RGB batches already `image_size`
square are taken as prepared and pass through untouched (tfdml's evaluation feeds such batches). Encoded JPEG/PNG/GIF/BMP strings are decoded one by one, then
prepared as evaluation prepares files (always resized). Wrong ranks or channel counts fail with a one-line message starting `tfdml:`.

Example:
    >>> x = prepare_images(tf.zeros([2, 40, 30, 4]), image_size=16)
    >>> x.shape.as_list()
    [2, 16, 16, 3]
"""

from __future__ import annotations

import tensorflow as tf

from tfdml.data.pipeline import _composite_on_white

ARRAY_CONTRACT = "images must be [batch, height, width, channels] with 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels, values 0-255"


def prepare_images(images: tf.Tensor, image_size: int, resize: int | None = None) -> tf.Tensor:
    """float32 `[B, image_size, image_size, 3]` model input from any-size 1-4 channel pixels (0-255)."""
    rank_ok = tf.debugging.Assert(tf.equal(tf.rank(images), 4), [f"tfdml: {ARRAY_CONTRACT}; got shape",
                                                                  tf.shape(images)])
    with tf.control_dependencies([rank_ok]):
        x = tf.cast(images, tf.float32)
        # A reshape that cannot fail (any rank fits), so the Assert above is the only error a bad rank raises.
        dims = tf.concat([tf.shape(x), tf.ones([4], tf.int32)], axis=0)
        x = tf.reshape(x, [-1, dims[1], dims[2], dims[3]])
    c = tf.shape(x)[-1]
    ok = tf.logical_and(c >= 1, c <= 4)
    with tf.control_dependencies([tf.debugging.Assert(ok, [f"tfdml: {ARRAY_CONTRACT}; got shape", tf.shape(x)])]):
        x = tf.identity(x)
    size_ok = tf.reduce_all(tf.equal(tf.shape(x)[1:3], [image_size, image_size]))
    ready = tf.logical_and(tf.equal(c, 3), size_ok)  # already prepared (tfdml's evaluation feeds such batches)
    x = tf.cond(ready, lambda: tf.reshape(x, [-1, image_size, image_size, 3]),
                lambda: _prepare_always(x, image_size, resize))
    return tf.ensure_shape(x, [None, image_size, image_size, 3])


def _prepare_always(x: tf.Tensor, image_size: int, resize: int | None) -> tf.Tensor:
    """Composite on white, short side to `resize` (or `image_size`), centre crop: what evaluation does to a file."""
    return _resize_and_crop(_composite_on_white(x / 255.0), image_size, resize or image_size) * 255.0


def _resize_and_crop(x: tf.Tensor, image_size: int, short_side: int) -> tf.Tensor:
    hw = tf.cast(tf.shape(x)[1:3], tf.float32)
    new = tf.cast(tf.round(hw * short_side / tf.reduce_min(hw)), tf.int32)
    x = tf.image.resize(x, new, antialias=True)
    return tf.image.resize_with_crop_or_pad(x, image_size, image_size)


def decode_images(encoded: tf.Tensor, image_size: int, resize: int | None = None) -> tf.Tensor:
    """float32 `[B, image_size, image_size, 3]` from a `[B]` string tensor of encoded JPEG/PNG/GIF/BMP files."""
    rank_ok = tf.debugging.Assert(tf.equal(tf.rank(encoded), 1), [
        "tfdml: encoded images must be a 1-D batch of strings (file contents, e.g. tf.io.read_file(path)); got shape",
        tf.shape(encoded)])
    with tf.control_dependencies([rank_ok]):
        encoded = tf.identity(encoded)

    def one(data: tf.Tensor) -> tf.Tensor:
        pixels = tf.cast(tf.io.decode_image(data, expand_animations=False), tf.float32)
        return tf.ensure_shape(_prepare_always(pixels[None], image_size, resize)[0], [image_size, image_size, 3])

    return tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


ANY_IMAGES = tf.TensorSpec(None, tf.float32, name="images")
ANY_UINT8_IMAGES = tf.TensorSpec(None, tf.uint8, name="images")
ENCODED_IMAGES = tf.TensorSpec(None, tf.string, name="images")
