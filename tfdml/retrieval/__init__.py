"""Retrieval from Python: `Retriever` (search, calibrate, match) and `SearchResults`.

Example:
    >>> import tfdml
    >>> retriever = tfdml.Retriever(model, gallery_table, image_size=32)  # doctest: +SKIP
    >>> print(retriever.search("query.png", k=3))  # doctest: +SKIP
"""

from tfdml.retrieval.calibration import Calibration, calibrate_threshold
from tfdml.retrieval.results import SearchResults
from tfdml.retrieval.retriever import Retriever

__all__ = ["Calibration", "Retriever", "SearchResults", "calibrate_threshold"]
