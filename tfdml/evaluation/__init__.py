"""Retrieval evaluation on numpy embeddings: exact cosine k-NN, MLRC metrics and Metrix's utilization."""

from tfdml.evaluation.metrics import evaluate_retrieval, nmi, retrieval_metrics
from tfdml.evaluation.neighbours import nearest_neighbours
from tfdml.evaluation.utilization import mix_embeddings, utilization

__all__ = ["evaluate_retrieval", "mix_embeddings", "nearest_neighbours", "nmi", "retrieval_metrics", "utilization"]
