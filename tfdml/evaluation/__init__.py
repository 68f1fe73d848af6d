"""Retrieval evaluation on numpy embeddings: exact cosine k-NN and MLRC metrics."""

from tfdml.evaluation.metrics import evaluate_retrieval, nmi, retrieval_metrics
from tfdml.evaluation.neighbours import nearest_neighbours

__all__ = ["evaluate_retrieval", "nearest_neighbours", "nmi", "retrieval_metrics"]
