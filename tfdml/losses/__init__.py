"""Metric losses on one pair core, and the registry YAML configs resolve by name.

The contract: a pair loss returns per-anchor `Terms` from `from_pairs` and its base class reduces them
(`reduction=`) after mining has reweighted the pairs (`mining=`); capabilities are declared on each
class and asked with `supports`; wrappers (`CrossBatchMemory`, CCP's objective) hold their inner loss
in `inner`. See `tfdml.losses.base` for how a new pair loss is written.
"""

from tfdml.losses import core
from tfdml.losses.base import LOSSES, LossWrapper, MetricLoss, PairLoss, get_loss, register_loss, unwrap
from tfdml.losses.capabilities import Capabilities, Unsupported, losses_supporting, supports
from tfdml.losses.core import References
from tfdml.losses.mining import MINERS, BatchHardMiner, Miner, MultiSimilarityMiner, get_miner, register_miner
from tfdml.losses.pair import ContrastiveLoss, MultiSimilarityLoss, TripletLoss
from tfdml.losses.proxies import HasProxyBank, ProxyBank
from tfdml.losses.proxy import (ArcFaceLoss, NormalizedSoftmaxLoss, ProxyAnchorLoss, ProxyLoss, ProxyNCAPlusPlusLoss,
                                ProxySoftmaxLoss, SoftmaxLoss, SoftTripleLoss)
from tfdml.losses.circle import CircleLoss  # after the others: registration order lists it last
from tfdml.losses.reducers import REDUCTIONS, Terms
from tfdml.losses.xbm import CrossBatchMemory

__all__ = ["core", "LOSSES", "MetricLoss", "PairLoss", "LossWrapper", "References", "Terms", "REDUCTIONS",
           "Capabilities", "Unsupported", "supports", "losses_supporting", "unwrap", "get_loss", "register_loss",
           "MINERS", "Miner", "MultiSimilarityMiner", "BatchHardMiner", "get_miner", "register_miner",
           "ContrastiveLoss", "MultiSimilarityLoss", "TripletLoss", "CircleLoss", "ProxyLoss", "ProxyAnchorLoss",
           "SoftmaxLoss", "ProxySoftmaxLoss", "NormalizedSoftmaxLoss", "ProxyNCAPlusPlusLoss", "ArcFaceLoss",
           "SoftTripleLoss", "CrossBatchMemory", "ProxyBank", "HasProxyBank"]
