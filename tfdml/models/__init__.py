"""Backbones, the embedding head and `DMLModel` (custom train_step, parameter groups)."""

from tfdml.models.backbones import BACKBONES, build_backbone, register_backbone
from tfdml.models.dml_model import PARAMETER_GROUPS, DMLModel
from tfdml.models.head import EmbeddingHead
from tfdml.models.optim import ScaledSchedule, scaled_clone

__all__ = ["BACKBONES", "build_backbone", "register_backbone", "DMLModel", "PARAMETER_GROUPS", "EmbeddingHead",
           "ScaledSchedule", "scaled_clone"]
