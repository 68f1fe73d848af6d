"""The test embeddings in TensorBoard's projector: a checkpoint, class names and a sprite of the images.

A run writes `RUN_DIR/logs/projector/` at its end; `tensorboard --logdir RUN_DIR/logs` shows it
under "Projector" (PCA, t-SNE, UMAP), each point drawn as its image and coloured by class. At most
`MAX_POINTS` test images are shown, drawn at random with the run's seed: the projector is slow
beyond a few thousand points and a sprite is limited to 8192 x 8192 pixels.

Example (not run as a doctest: it needs a run's test embeddings):
    >>> write_projector("runs/emoji/logs/projector", embeddings, data.test)  # doctest: +SKIP
    PosixPath('runs/emoji/logs/projector')
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfdml.data.table import DatasetTable

MAX_POINTS = 2000
MAX_SPRITE_SIDE = 8192  # the projector's limit, in pixels
TENSOR_NAME = "embedding/.ATTRIBUTES/VARIABLE_VALUE"  # the variable of `tf.train.Checkpoint(embedding=...)`


def write_projector(directory: str | Path, embeddings: np.ndarray, table: DatasetTable, *, seed: int = 0,
                    max_points: int = MAX_POINTS, thumbnail: int = 32) -> Path:
    """Write the projector files of `embeddings` (one row per `table` row) to `directory`; return it.

    Files: `embedding.ckpt-1*` and `checkpoint` (the points), `metadata.tsv` (one class name a line, in point order),
    `sprite.png` (the images in a square grid, row-major), `projector_config.pbtxt` and an event file
    that makes the folder a TensorBoard run.
    """
    from tensorboard.plugins import projector

    from tfdml.retrieval.draw import PLACEHOLDER, table_thumbnails

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = np.arange(len(table))
    if len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_points, replace=False))
    shown = table.select(rows)
    # `save` (not `write`) records the checkpoint, by relative path, where TensorBoard looks for it.
    tf.train.Checkpoint(embedding=tf.Variable(np.asarray(embeddings)[rows], trainable=False)).save(
        str(directory / "embedding.ckpt"))
    # Tabs or newlines in a class name would shift every later line.
    names = [" ".join(table.class_names[label].split()) for label in shown.label]
    (directory / "metadata.tsv").write_text("".join(f"{name}\n" for name in names), encoding="utf-8")

    side = math.ceil(math.sqrt(len(rows)))
    tile = max(1, min(thumbnail, MAX_SPRITE_SIDE // side))
    sprite = np.full((side * tile, side * tile, 3), 255, np.uint8)
    for i, pixels in enumerate(table_thumbnails(shown, tile)):
        r, c = divmod(i, side)
        sprite[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = PLACEHOLDER if pixels is None else pixels
    tf.io.write_file(str(directory / "sprite.png"), tf.io.encode_png(sprite))

    config = projector.ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name, entry.metadata_path = TENSOR_NAME, "metadata.tsv"
    entry.sprite.image_path = "sprite.png"
    entry.sprite.single_image_dim.extend([tile, tile])
    projector.visualize_embeddings(str(directory), config)
    # TensorBoard's projector looks for its config in runs, and a run is a folder with an event file.
    with tf.summary.create_file_writer(str(directory)).as_default():
        tf.summary.text("projector", f"{len(rows)} of {len(table)} test images (drawn with seed {seed})", step=0)
    return directory
