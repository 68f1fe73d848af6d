"""Metrix mixing: pairs, soft targets and the three mixing levels, as a component of `DMLModel`."""

from tfdml.mixing.metrix import (KINDS, LEVELS, Metrix, mixed_pair_loss, mixed_proxy_loss, sample_beta, select_pairs,
                                 soft_targets)

__all__ = ["KINDS", "LEVELS", "Metrix", "mixed_pair_loss", "mixed_proxy_loss", "sample_beta", "select_pairs", "soft_targets"]
