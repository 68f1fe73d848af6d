"""CCP (chance-constrained proxies): the regularised multi-proxy objective, k-center re-seeding and rounds."""

from tfdml.ccp.kcenter import greedy_k_center
from tfdml.ccp.objective import CCPLoss, ProximalTerm
from tfdml.ccp.rounds import CCPRounds, reset_slots, table_pool

__all__ = ["CCPLoss", "CCPRounds", "ProximalTerm", "greedy_k_center", "reset_slots", "table_pool"]
