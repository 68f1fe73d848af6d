"""Data fixtures: the real emoji set (fetched once into a persistent cache) and small synthetic tables."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tfdml.data import DatasetTable, read_emoji


@pytest.fixture(scope="session")
def emoji_root() -> Path:
    """Persistent data dir ($TFDML_DATA or ~/.cache/tfdml) so only the first run fetches with npm."""
    return Path(os.environ.get("TFDML_DATA") or Path.home() / ".cache" / "tfdml")


@pytest.fixture(scope="session")
def emoji_table(emoji_root: Path) -> DatasetTable:
    return read_emoji(emoji_root)


def _make_table(sizes: list[int], *, image_size: int = 8, channels: int = 4, seed: int = 0) -> DatasetTable:
    keys = np.repeat(np.arange(len(sizes)), sizes)
    images = np.random.default_rng(seed).integers(0, 256, (len(keys), image_size, image_size, channels), np.uint8)
    return DatasetTable.from_class_keys([f"img/{i}" for i in range(len(keys))], keys, images=images)


@pytest.fixture
def make_table():
    """Factory: in-memory table with ``sizes[c]`` random images of class ``c``."""
    return _make_table


@pytest.fixture
def small_table() -> DatasetTable:
    """Twelve classes of 1..12 random 8x8 RGBA images."""
    return _make_table(list(range(1, 13)))


@pytest.fixture
def file_table(tmp_path: Path) -> DatasetTable:
    """Six classes of two files each, mixing sizes, JPEG/PNG and grey/grey+alpha/RGB/RGBA."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    paths, keys = [], []
    for c in range(6):
        for i in range(2):
            channels = (1, 2, 3, 4)[(c + i) % 4]
            img = rng.integers(0, 256, (20 + 5 * c, 36 - 4 * i, channels), np.uint8)
            jpeg = channels in (1, 3) and i == 0
            path = tmp_path / f"c{c}_{i}.{'jpg' if jpeg else 'png'}"
            tf.io.write_file(str(path), tf.io.encode_jpeg(img) if jpeg else tf.io.encode_png(img))
            paths.append(str(path))
            keys.append(f"class{c}")
    return DatasetTable.from_class_keys(paths, keys)
