"""Retrieval from Python: `Retriever` (search, calibrate, match) and `SearchResults`.

Example (not run as a doctest: it needs a trained model, a gallery and image files):
    >>> import tfdml
    >>> retriever = tfdml.Retriever(model, gallery_table, image_size=32)  # doctest: +SKIP
    >>> print(retriever.search("query.png", k=3))  # doctest: +SKIP
"""

from tfdml.retrieval.calibration import Calibration, calibrate_threshold
from tfdml.retrieval.results import SearchResults
from tfdml.retrieval.retriever import Retriever

__all__ = ["Calibration", "Retriever", "SearchResults", "calibrate_threshold"]
