"""Exported SavedModels take images of any size and 1-4 channels, and encoded files; bad shapes fail in one line.

The reference for every check is the Keras model on images prepared by tfdml's own evaluation
pipeline (`eval_dataset` of a file table: short side resize, centre crop, alpha on white).
"""

from __future__ import annotations


import numpy as np
import pytest
import tensorflow as tf

from tfdml.data import eval_dataset
from tfdml.data.table import DatasetTable
from tfdml.export import export_retrieval_model, export_saved_model
from tfdml.losses import MultiSimilarityLoss
from tfdml.models import DMLModel, EmbeddingHead, build_backbone

SIZE = 16


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple:
    tmp = tmp_path_factory.mktemp("serving")
    model = DMLModel(build_backbone("small_cnn", (SIZE, SIZE, 3), widths=(8, 16)), EmbeddingHead(8),
                     MultiSimilarityLoss())
    model.build((None, SIZE, SIZE, 3))
    rng = np.random.default_rng(0)
    files = []
    for i, (h, w, c) in enumerate([(40, 30, 4), (16, 16, 3), (23, 50, 1), (31, 31, 2), (20, 28, 3)]):
        pixels = rng.integers(0, 256, (h, w, c), np.uint8)
        path = tmp / f"{i}.png"
        tf.io.write_file(str(path), tf.io.encode_png(pixels))
        files.append((path, pixels))
    table = DatasetTable.from_class_keys([str(p) for p, _ in files], [f"c{i % 2}" for i in range(len(files))])
    export_saved_model(model, tmp / "embedder", image_size=SIZE, resize=20)
    export_retrieval_model(model, table, tmp / "retrieval", image_size=SIZE, resize=20)
    reference = np.concatenate([model(x, training=False).numpy()
                                for x, _ in eval_dataset(table, image_size=SIZE, batch_size=8, resize=20)])
    # An RGB batch already SIZE x SIZE is taken as prepared (what tfdml's evaluation feeds), not resized to 20 again.
    from_files = reference.copy()
    reference[1] = model(files[1][1][None].astype(np.float32), training=False).numpy()[0]
    return (tf.saved_model.load(str(tmp / "embedder")), tf.saved_model.load(str(tmp / "retrieval")), files,
            reference, from_files)


def test_any_size_and_channels_embed_as_evaluation_does(exported):
    embedder, retrieval, files, reference, _ = exported
    for i, (path, pixels) in enumerate(files):
        batch = pixels[None]
        np.testing.assert_allclose(embedder.serve(tf.cast(batch, tf.float32)).numpy()[0], reference[i], atol=1e-5)
        np.testing.assert_allclose(embedder.serve_uint8(batch).numpy()[0], reference[i], atol=1e-5)
        np.testing.assert_allclose(retrieval.embed(tf.cast(batch, tf.float32)).numpy()[0], reference[i], atol=1e-5)
    encoded = tf.stack([tf.io.read_file(str(p)) for p, _ in files])  # mixed sizes in one batch
    as_files = exported[4]  # files are always resized, as evaluation does (16 x 16 too)
    np.testing.assert_allclose(embedder.serve_bytes(encoded).numpy(), as_files, atol=1e-5)
    np.testing.assert_allclose(retrieval.embed_bytes(encoded).numpy(), as_files, atol=1e-5)
    found = retrieval.search_bytes(encoded, tf.constant(2))
    assert found["ids"].numpy()[:, 0].tolist() == list(range(len(files)))  # each file finds itself first
    np.testing.assert_allclose(found["scores"].numpy()[:, 0], 1.0, atol=1e-5)


def test_rgba_is_composited_on_white_not_dropped(exported):
    embedder, _, files, reference, _ = exported
    rgba = files[0][1].astype(np.float32)
    alpha = rgba[..., 3:] / 255.0
    on_white = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    np.testing.assert_allclose(embedder.serve(on_white[None]).numpy()[0], reference[0], atol=1e-4)
    dropped = embedder.serve(rgba[None, ..., :3]).numpy()[0]  # PIL's .convert("RGB"): alpha thrown away
    assert np.abs(dropped - reference[0]).max() > 1e-3


@pytest.mark.parametrize("shape, message", [
    ((16, 16, 3), "tfdml: images must be [batch, height, width, channels]"),
    ((2, 16, 16, 5), "tfdml: images must be [batch, height, width, channels] with 1 (grey), 2"),
])
def test_wrong_rank_or_channels_fail_with_one_line(exported, shape, message):
    embedder, retrieval, _, _, _ = exported
    for fn in (embedder.serve, lambda x: retrieval.search(x, tf.constant(1))):
        with pytest.raises(tf.errors.InvalidArgumentError) as err:
            fn(tf.zeros(shape))
        assert message in str(err.value)
    with pytest.raises(tf.errors.InvalidArgumentError, match="1-D batch of strings"):
        embedder.serve_bytes(tf.constant("not a batch"))
