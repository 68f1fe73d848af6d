"""tf.data pipelines from a :class:`~tfdml.data.table.DatasetTable`.

Images come out as float32 RGB pixel values in ``[0, 255]`` (the models' input contract: each
backbone normalises its input itself, and exported models take the same values); transparent pixels are composited onto white
(emoji have transparent backgrounds). Tables with in-memory ``images`` gather whole batches from
one constant tensor; path tables decode files in parallel, and in training a JPEG decodes only
its random crop window (``tf.image.decode_and_crop_jpeg``). Training augmentation is random
resized crop, optional flip, brightness/contrast/saturation jitter and random greyscale, drawn with stateless ops seeded by
``(seed, step)`` so runs repeat. With ``bbox_crop=True`` both pipelines first crop each image to its
``table.bbox`` (rows without a box keep the whole image), as CUB and Cars196 papers do.

Example (not run as a doctest: it downloads the emoji dataset):
    >>> from tfdml.data import MPerClassSampler, read_emoji, split_classes  # doctest: +SKIP
    >>> train = split_classes(read_emoji()).subset("train")  # doctest: +SKIP
    >>> sampler = MPerClassSampler(train.label, m=4, batch_size=64)  # doctest: +SKIP
    >>> images, labels = next(iter(train_dataset(train, sampler, image_size=32)))  # doctest: +SKIP
    >>> images.shape, labels.dtype  # doctest: +SKIP
    (TensorShape([64, 32, 32, 3]), tf.int32)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfdml.data.sampler import MPerClassSampler
from tfdml.data.table import DatasetTable
from tfdml.errors import DataError

_NOT_AN_IMAGE = "tfdml: not a JPEG, PNG, GIF or BMP image:"
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")
AUTOTUNE = tf.data.AUTOTUNE


def _tf_message(err: tf.errors.OpError) -> str:
    """The first line of a TensorFlow error without its ``{{function_node ...}}`` prefix."""
    return re.sub(r"\{\{function_node [^}]*\}\}\s*", "", err.message).splitlines()[0].strip()


def _composite_on_white(x: tf.Tensor) -> tf.Tensor:
    """Float ``[..., H, W, C]`` with C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) to RGB on white."""
    c = tf.shape(x)[-1]
    rgb = tf.cond(c >= 3, lambda: x[..., :3], lambda: tf.repeat(x[..., :1], 3, axis=-1))
    alpha = tf.cond(tf.equal(c % 2, 0), lambda: x[..., -1:], lambda: tf.ones_like(x[..., :1]))
    out = rgb * alpha + (1.0 - alpha)
    out.set_shape(x.shape[:-1] + [3])
    return out


def _decode_file(path: tf.Tensor, data: tf.Tensor | None = None) -> tf.Tensor:
    """One image file to float32 RGB ``[H, W, 3]``; a non-image fails naming the path. ``data``: its bytes, if read."""
    data = tf.io.read_file(path) if data is None else data
    # A magic-byte check costs nothing next to decoding and lets the error name the file.
    ok = tf.reduce_any([tf.equal(tf.strings.substr(data, 0, len(m)), m) for m in _MAGIC])
    with tf.control_dependencies([tf.debugging.Assert(ok, [_NOT_AN_IMAGE, path])]):
        x = tf.io.decode_image(data, expand_animations=False)
    return _composite_on_white(tf.image.convert_image_dtype(x, tf.float32))


def _box_bounds(hw: tf.Tensor, box: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Float pixel corners ``(y1, x1)``, ``(y2, x2)`` of the box ``x1, y1, x2, y2`` in an image of size ``hw``.

    Rounded outwards, clipped, at least 1 px; a NaN box is the whole image.
    """
    box = tf.where(tf.reduce_all(tf.math.is_finite(box)), box, tf.stack([0.0, 0.0, hw[1], hw[0]]))
    lo = tf.clip_by_value(tf.floor(tf.stack([box[1], box[0]])), 0.0, hw - 1.0)
    return lo, tf.clip_by_value(tf.math.ceil(tf.stack([box[3], box[2]])), lo + 1.0, hw)


def _crop_to_box(x: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
    """``[H, W, C]`` cropped to the pixel box ``x1, y1, x2, y2`` (clipped, at least 1 px); NaN keeps it whole."""
    lo, hi = (tf.cast(v, tf.int32) for v in _box_bounds(tf.cast(tf.shape(x)[:2], tf.float32), box))
    return x[lo[0]:hi[0], lo[1]:hi[1]]


def _unit_boxes(table: DatasetTable) -> tuple[np.ndarray, np.ndarray]:
    """In-memory images' boxes for ``crop_and_resize`` and their width / height in pixels; whole images where absent.

    Rounded as :func:`_crop_to_box` does; ``crop_and_resize`` maps 0 and 1 to the first and last
    pixel centres, so a box spans the centres of its first and last pixels.
    """
    h, w = table.images.shape[1:3]
    box = np.where(np.isfinite(table.bbox).all(axis=1, keepdims=True), table.bbox, [0.0, 0.0, w, h])
    lo = np.clip(np.floor(box[:, [1, 0]]), 0, [h - 1, w - 1])
    hi = np.clip(np.ceil(box[:, [3, 2]]), lo + 1, [h, w])
    unit = np.concatenate([lo, hi - 1], axis=1) / np.tile([max(h - 1, 1), max(w - 1, 1)], 2)
    return unit.astype(np.float32), ((hi - lo)[:, 1] / (hi - lo)[:, 0]).astype(np.float32)


def _random_boxes(n: int | tf.Tensor, seed: tf.Tensor, scale: tuple[float, float], ratio: tuple[float, float],
                  aspect: float | tf.Tensor = 1.0) -> tf.Tensor:
    """``[n, 4]`` normalised ``y1, x1, y2, x2`` crops covering ``scale`` of the area, width:height in ``ratio``.

    ``aspect`` is the image's width / height, so ``ratio`` holds in pixels, not in normalised units.
    """
    u = tf.random.stateless_uniform([n, 4], seed)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    r = tf.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1])
    w = tf.minimum(1.0, tf.sqrt(area * r / aspect))  # clipping beats torchvision's retry loop on a batch
    h = tf.minimum(1.0, tf.sqrt(area * aspect / r))
    y1, x1 = u[:, 2] * (1.0 - h), u[:, 3] * (1.0 - w)
    return tf.stack([y1, x1, y1 + h, x1 + w], axis=1)


def _draws(n: int | tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The five uniform draws ``[n, 1, 1, 5]`` that :func:`_jitter` takes for each image of a batch."""
    return tf.random.stateless_uniform([n, 1, 1, 5], seed)


def _jitter(x: tf.Tensor, u: tf.Tensor, flip: bool, brightness: float, contrast: float,
            saturation: float = 0.0, grayscale: float = 0.0) -> tf.Tensor:
    """Flip, contrast, brightness, saturation and random greyscale of ``[B, H, W, 3]`` or ``[H, W, 3]`` in ``[0, 1]``.

    ``u``: each image's draws (``_draws(B, seed)`` or one row of it). Returns pixel values in
    ``[0, 255]``. Per image (the file path) this runs several times faster than on a batch: one
    224 px image stays in cache through all the passes.
    """
    if flip:
        if x.shape.rank == 3:  # a cond copies nothing when the image is not flipped
            x = tf.cond(u[0, 0, 0] < 0.5, lambda: tf.reverse(x, axis=[1]), lambda: x)
        else:
            x = tf.where(u[..., :1] < 0.5, tf.reverse(x, axis=[2]), x)
    if contrast or brightness:  # both in one affine map: (x - mean) * factor + mean + shift
        factor = 1.0 + contrast * (2.0 * u[..., 1:2] - 1.0)
        shift = brightness * (2.0 * u[..., 2:3] - 1.0)
        if contrast:
            shift = shift + (1.0 - factor) * tf.reduce_mean(x, axis=[-3, -2], keepdims=True)
        x = x * factor + shift
    if saturation or grayscale:
        grey = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
        factor = 1.0 + saturation * (2.0 * u[..., 3:4] - 1.0)
        factor = tf.where(u[..., 4:5] < grayscale, 0.0, factor)  # greyscale is saturation 0
        x = grey + (x - grey) * factor
    return tf.clip_by_value(x * 255.0, 0.0, 255.0)


def _random_crop_file(path: tf.Tensor, box: tf.Tensor | None, seed: tf.Tensor, size: list[int],
                      scale: tuple[float, float], ratio: tuple[float, float]) -> tf.Tensor:
    """A random resized crop ``[S, S, 3]`` in ``[0, 1]`` of one file, inside its pixel ``box`` if given.

    JPEGs decode only the crop window (``decode_and_crop_jpeg``, sized from the header): a crop of
    area 0.16-1 skips about half the decoding work. Other formats decode whole, then crop.
    """
    data = tf.io.read_file(path)
    nan_box = tf.fill([4], float("nan"))

    def jpeg() -> tf.Tensor:
        hw = tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.float32)
        lo, hi = _box_bounds(hw, nan_box if box is None else box)
        extent = hi - lo
        crop = _random_boxes(1, seed, scale, ratio, extent[1] / extent[0])[0]
        start = tf.floor(lo + crop[:2] * extent)
        end = tf.clip_by_value(tf.math.ceil(lo + crop[2:] * extent), start + 1.0, hi)
        window = tf.cast(tf.concat([start, end - start], 0), tf.int32)
        x = tf.image.decode_and_crop_jpeg(data, window, channels=3)
        return tf.image.resize(tf.image.convert_image_dtype(x, tf.float32), size)

    def other() -> tf.Tensor:
        x = _decode_file(path, data)
        if box is not None:
            x = _crop_to_box(x, box)
        hw = tf.cast(tf.shape(x)[:2], tf.float32)
        crop = _random_boxes(1, seed, scale, ratio, hw[1] / hw[0])
        return tf.image.crop_and_resize(x[None], crop, [0], size)[0]

    return tf.cond(tf.equal(tf.strings.substr(data, 0, 3), _MAGIC[0]), jpeg, other)


def train_dataset(
    table: DatasetTable,
    sampler: MPerClassSampler,
    *,
    image_size: int,
    seed: int = 0,
    crop_scale: tuple[float, float] = (0.6, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = False,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.0,
    grayscale: float = 0.0,
    start_step: int = 0,
    bbox_crop: bool = False,
) -> tf.data.Dataset:
    """Endless augmented batches ``(images float32 [B, S, S, 3] in [0, 255], labels int32 [B])``.

    ``start_step`` resumes the stream at that batch (e.g. ``epochs_done * steps_per_epoch``).
    Labels are ``table.dense_labels()`` (``0..table.num_classes-1``), so proxy losses can size
    their proxies with ``table.num_classes``; pair losses only use their equality. Flip is off by
    default: many emoji (arrows, hands, flags, text) change meaning when mirrored.
    """
    if len(sampler.labels) != len(table) or not np.array_equal(
            np.unique(sampler.labels, return_inverse=True)[1], table.dense_labels()):
        raise DataError(f"the sampler was built for other labels ({len(sampler.labels)} rows) than this table "
                        f"({len(table)} rows); build it with MPerClassSampler(table.label, ...)")
    size, batch = [image_size, image_size], sampler.batch_size
    labels = tf.constant(table.dense_labels(), tf.int32)
    # Resuming at batch `start_step` of the endless stream replays the same batches and the same
    # augmentation (seeded by the step) as an uninterrupted run.
    epoch, offset = divmod(start_step, len(sampler))
    steps = sampler.as_dataset(epoch).skip(offset).enumerate(start=start_step)

    def seeds(step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        base = tf.stack([tf.constant(seed, tf.int64), step])
        return (tf.random.experimental.stateless_fold_in(base, 0),
                tf.random.experimental.stateless_fold_in(base, 1))

    def jitter(x: tf.Tensor, step: tf.Tensor, j: tf.Tensor | None = None) -> tf.Tensor:
        u = _draws(batch, seeds(step)[1])  # image j of a batch gets row j, whichever path it takes
        return _jitter(x, u if j is None else u[j], flip, brightness, contrast, saturation, grayscale)

    if table.images is not None:
        pixels = tf.constant(table.images)
        aspect = table.images.shape[2] / table.images.shape[1]
        if bbox_crop:
            outer, outer_aspect = (tf.constant(v) for v in _unit_boxes(table))

        def load_batch(step: tf.Tensor, idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x = _composite_on_white(tf.image.convert_image_dtype(tf.gather(pixels, idx), tf.float32))
            if bbox_crop:  # the random crop is drawn inside each object box, in the box's own aspect
                lo, hi = tf.split(tf.gather(outer, idx), 2, axis=1)
                extent = hi - lo
                boxes = _random_boxes(batch, seeds(step)[0], crop_scale, crop_ratio, tf.gather(outer_aspect, idx))
                boxes = tf.concat([lo, lo], axis=1) + boxes * tf.concat([extent, extent], axis=1)
            else:
                boxes = _random_boxes(batch, seeds(step)[0], crop_scale, crop_ratio, aspect)
            x = tf.image.crop_and_resize(x, boxes, tf.range(batch), size)
            return jitter(x, step), tf.gather(labels, idx)

        ds = steps.map(load_batch, num_parallel_calls=AUTOTUNE)
    else:
        paths, bboxes = tf.constant(table.path), tf.constant(table.bbox)

        def load_one(step: tf.Tensor, i: tf.Tensor, j: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            # Crop and jitter each image before batching: files differ in size, so the crop cannot
            # wait, and the jitter is faster on one image than on a batch.
            seed_j = tf.random.experimental.stateless_fold_in(seeds(step)[0], j)
            x = _random_crop_file(tf.gather(paths, i), tf.gather(bboxes, i) if bbox_crop else None, seed_j,
                                  size, crop_scale, crop_ratio)
            return jitter(x, step, j), tf.gather(labels, i)

        ds = (steps.map(lambda step, idx: (tf.fill([batch], step), idx, tf.range(batch, dtype=tf.int64)))
              .unbatch()
              .map(load_one, num_parallel_calls=AUTOTUNE)
              .batch(batch, drop_remainder=True))
    return ds.prefetch(AUTOTUNE)


def eval_dataset(table: DatasetTable, *, image_size: int, batch_size: int, bbox_crop: bool = False,
                 resize: int | None = None, cache: bool = False) -> tf.data.Dataset:
    """Batches ``(images float32 [b, S, S, 3] in [0, 255], labels int32 [b])`` in table order, unaugmented.

    Labels are the global ``table.label``. Files are resized so the shorter side is
    ``resize`` (default ``image_size``; ResNet's convention is 256 for 224 crops) and centre-cropped to
    ``image_size``; in-memory images are resized to ``image_size``. ``cache`` keeps the decoded
    batches in memory after the first pass (float32: about 0.6 MB per 224 px image). With
    ``bbox_crop`` each image is first cropped to its ``table.bbox`` where it has one.
    """
    labels = tf.constant(table.label, tf.int32)
    if table.images is not None:
        pixels = tf.constant(table.images)
        outer = tf.constant(_unit_boxes(table)[0]) if bbox_crop else None

        def load_batch(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x = _composite_on_white(tf.image.convert_image_dtype(tf.gather(pixels, idx), tf.float32))
            if bbox_crop:
                x = tf.image.crop_and_resize(x, tf.gather(outer, idx), tf.range(tf.shape(idx)[0]),
                                             [image_size, image_size])
            elif table.images.shape[1:3] != (image_size, image_size):
                x = tf.image.resize(x, [image_size, image_size], antialias=True)
            return x * 255.0, tf.gather(labels, idx)

        ds = tf.data.Dataset.range(len(table)).batch(batch_size).map(load_batch, num_parallel_calls=AUTOTUNE)
    else:
        def load_one(path: tf.Tensor, y: tf.Tensor, box: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x = _crop_to_box(_decode_file(path), box) if bbox_crop else _decode_file(path)
            hw = tf.cast(tf.shape(x)[:2], tf.float32)
            new = tf.cast(tf.round(hw * (resize or image_size) / tf.reduce_min(hw)), tf.int32)
            x = tf.image.resize(x, new, antialias=True)
            return tf.image.resize_with_crop_or_pad(x, image_size, image_size) * 255.0, y

        ds = (tf.data.Dataset.from_tensor_slices((table.path, labels, table.bbox))
              .map(load_one, num_parallel_calls=AUTOTUNE).batch(batch_size))
    if cache:  # decoded once, reused by every later pass (validation runs every epoch)
        ds = ds.cache()
    return ds.prefetch(AUTOTUNE)


def find_bad_images(table: DatasetTable, *, decode: bool = False, cache_dir: str | Path | None = None,
                    workers: int | None = None) -> list[tuple[int, str]]:
    """`(row, reason)` for each file that is missing or not an image.

    Checks existence and the format's magic bytes (fast); with ``decode=True`` also decodes every
    file, which finds truncated and garbled files too. Decoding runs on a thread pool (TensorFlow's
    decoders release the GIL), and its verdict is cached per file list (paths, sizes and
    modification times) under ``cache_dir`` (default ``$TFDML_CACHE`` or ``~/.cache/tfdml``, then
    ``image_checks/``), so a rerun on unchanged files is instant. Tables with in-memory images have none.
    """
    if table.images is not None:
        return []
    bad: list[tuple[int, str]] = []
    stats: list[str] = []
    for row, path in enumerate(table.path):
        p = Path(path)
        try:
            st = p.stat()
        except OSError:
            st = None
        if st is None or not p.is_file():
            bad.append((row, f"{path} (missing)"))
            continue
        stats.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}")
        with open(p, "rb") as f:
            head = f.read(8)
        if not head.startswith(_MAGIC):
            bad.append((row, f"{path} (not a JPEG, PNG, GIF or BMP file)"))
    if not decode:
        return bad
    cache = _check_cache_path(stats, cache_dir)
    known = {row for row, _ in bad}
    rows = [row for row in range(len(table)) if row not in known]
    undecodable = _read_check_cache(cache)
    if undecodable is None:
        undecodable = {str(table.path[row]): why for row, why in _undecodable(table.path, rows, workers)}
        _write_check_cache(cache, undecodable)
    bad += [(row, f"{table.path[row]} (cannot be decoded: {undecodable[table.path[row]]})")
            for row in rows if table.path[row] in undecodable]
    return sorted(bad)


def _undecodable(paths: np.ndarray, rows: list[int], workers: int | None) -> list[tuple[int, str]]:
    """`(row, reason)` of the files in `rows` that TensorFlow cannot decode, decoded on a thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    def check(row: int) -> tuple[int, str] | None:
        try:
            data = tf.io.read_file(str(paths[row]))
            if tf.strings.substr(data, 0, 3).numpy() == _MAGIC[0]:
                tf.io.decode_jpeg(data)  # what training uses for JPEGs: stricter than decode_image's sniffing
            else:
                tf.io.decode_image(data, expand_animations=False)
        except tf.errors.OpError as err:
            return row, _tf_message(err)
        return None

    with ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 1) * 2)) as pool:
        return [found for found in pool.map(check, rows) if found is not None]


def _check_cache_path(stats: list[str], cache_dir: str | Path | None) -> Path:
    base = Path(cache_dir) if cache_dir is not None else (
        Path(os.environ.get("TFDML_CACHE") or Path.home() / ".cache" / "tfdml") / "image_checks")
    return base / (hashlib.sha256("\n".join(stats).encode()).hexdigest()[:32] + ".json")


def _read_check_cache(path: Path) -> dict[str, str] | None:
    try:
        return {str(p): str(why) for p, why in json.loads(path.read_text())["undecodable"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: decode again


def _write_check_cache(path: Path, undecodable: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"undecodable": undecodable}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the next run the decoding


def validate_images(table: DatasetTable, *, decode: bool = False, max_listed: int = 5) -> None:
    """Raise a DataError naming the files that are missing or not images (see `find_bad_images`)."""
    bad = [reason for _, reason in find_bad_images(table, decode=decode)]
    if bad:
        listed = "; ".join(bad[:max_listed]) + (f"; and {len(bad) - max_listed} more" if len(bad) > max_listed else "")
        raise DataError(f"{len(bad)} of {len(table)} image files cannot be read: {listed}. "
                        "Fix or remove them, drop their rows from the dataset list, or set "
                        "data.skip_bad_images=true to train without them")


@contextlib.contextmanager
def reraise_data_errors(table: DatasetTable | None = None) -> Iterator[None]:
    """Turn TensorFlow errors about unreadable image files, raised while iterating, into DataErrors.

    With the `table` being read, a file that fails to decode is found (decoding every file, in
    parallel and cached) and named in the error.

    Example (not run as a doctest: it needs a table and a model):
        >>> with reraise_data_errors(table):  # doctest: +SKIP
        ...     model.fit(train_dataset(table, ...), ...)
    """
    try:
        yield
    except tf.errors.NotFoundError as err:
        raise DataError(f"an image file is missing: {_tf_message(err)}") from None
    except tf.errors.InvalidArgumentError as err:
        named = re.search(r"\[" + re.escape(_NOT_AN_IMAGE) + r"\] \[(.*)\]", err.message)
        if named:
            raise DataError(f"{named.group(1)} is {_NOT_AN_IMAGE.removeprefix('tfdml: ').rstrip(':')}; fix or "
                            "remove it (tfdml.data.validate_images(table) lists every such file)") from None
        if re.search(r"Decode|Jpeg|JPEG", err.message):  # the training path's JPEGs fail in ExtractJpegShape too
            if table is not None:
                validate_images(table, decode=True)  # names the files
            raise DataError(f"an image file cannot be decoded ({_tf_message(err)}); run "
                            "tfdml.data.validate_images(table, decode=True) to find it") from None
        raise
