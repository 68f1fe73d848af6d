"""Metric losses on one pair core, and the registry YAML configs resolve by name."""

from tfdml.losses import core
from tfdml.losses.base import LOSSES, MetricLoss, PairLoss, get_loss, register_loss
from tfdml.losses.core import References
from tfdml.losses.pair import ContrastiveLoss, MultiSimilarityLoss, TripletLoss
from tfdml.losses.proxy import (ArcFaceLoss, NormalizedSoftmaxLoss, ProxyAnchorLoss, ProxyLoss, ProxyNCAPlusPlusLoss,
                                ProxySoftmaxLoss, SoftTripleLoss)
from tfdml.losses.xbm import CrossBatchMemory

__all__ = ["core", "LOSSES", "MetricLoss", "PairLoss", "References", "get_loss", "register_loss",
           "ContrastiveLoss", "MultiSimilarityLoss", "TripletLoss", "ProxyLoss", "ProxyAnchorLoss",
           "ProxySoftmaxLoss", "NormalizedSoftmaxLoss", "ProxyNCAPlusPlusLoss", "ArcFaceLoss", "SoftTripleLoss",
           "CrossBatchMemory"]
