"""Metric losses on one pair core, and the registry YAML configs resolve by name."""

from tfdml.losses import core
from tfdml.losses.base import LOSSES, MetricLoss, PairLoss, get_loss, register_loss
from tfdml.losses.core import References
from tfdml.losses.pair import ContrastiveLoss, MultiSimilarityLoss
from tfdml.losses.proxy import ProxyAnchorLoss, ProxyLoss

__all__ = ["core", "LOSSES", "MetricLoss", "PairLoss", "References", "get_loss", "register_loss",
           "ContrastiveLoss", "MultiSimilarityLoss", "ProxyAnchorLoss", "ProxyLoss"]
