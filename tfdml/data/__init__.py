"""Datasets: one table format, class-disjoint splits, m-per-class sampling and tf.data pipelines.

The pipeline names load TensorFlow on first use, so tables, splits and readers stay light.

Example (not run as a doctest: it downloads the emoji dataset):
    >>> from tfdml.data import read_dataset, split_classes, MPerClassSampler  # doctest: +SKIP
    >>> table = split_classes(read_dataset("emoji"), test_fraction=0.5, seed=0)  # doctest: +SKIP
    >>> sampler = MPerClassSampler(table.subset("train").label, m=4, batch_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from tfdml.data.readers import READERS, read_dataset, register_reader
from tfdml.data.readers.emoji import read_emoji
from tfdml.data.sampler import MPerClassSampler
from tfdml.data.split import split_classes
from tfdml.data.table import DatasetTable

_PIPELINE = ("train_dataset", "eval_dataset", "validate_images", "reraise_data_errors")

__all__ = ["DatasetTable", "MPerClassSampler", "READERS", "read_dataset", "read_emoji", "register_reader",
           "split_classes", *_PIPELINE]


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        from tfdml.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'tfdml.data' has no attribute '{name}'")
