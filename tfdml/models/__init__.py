"""Backbones, the embedding head and `DMLModel` (custom train_step, parameter groups)."""

# Each backbone module registers its builders on import.
from tfdml.models import backbones as _backbones, bn_inception as _bn_inception  # noqa: F401
from tfdml.models.dml_model import PARAMETER_GROUPS, DMLModel
from tfdml.models.head import EmbeddingHead
from tfdml.models.optim import ScaledSchedule, scaled_clone
from tfdml.models.pixels import CaffePreprocess, PixelConvention
from tfdml.models.registry import (BACKBONES, backbone_arguments, build_backbone, freeze_batchnorm, freeze_through,
                                   register_backbone, resolve_backbone)
from tfdml.models.taps import descriptor_channels, tap_backbone
from tfdml.models.whitening import Whitening, apply_whitening, fit_whitening

__all__ = ["BACKBONES", "build_backbone", "register_backbone", "resolve_backbone", "backbone_arguments",
           "freeze_batchnorm", "freeze_through", "DMLModel", "PARAMETER_GROUPS", "EmbeddingHead", "CaffePreprocess",
           "PixelConvention", "ScaledSchedule", "scaled_clone", "Whitening", "fit_whitening",
           "apply_whitening", "tap_backbone", "descriptor_channels"]
