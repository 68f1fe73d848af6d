"""CCP (chance-constrained proxies): the regularised multi-proxy objective, k-center re-seeding and rounds.

`CCP` (`tfdml.ccp.method`) builds the method's parts from a config and its round callback.
"""

from tfdml.ccp.kcenter import greedy_k_center
from tfdml.ccp.method import CCP
from tfdml.ccp.objective import CCPLoss, ProximalTerm
from tfdml.ccp.rounds import CCPRounds, optimizer_slots, reset_slots, table_pool
from tfdml.ccp.state import RoundState

__all__ = ["CCP", "CCPLoss", "CCPRounds", "ProximalTerm", "RoundState", "greedy_k_center", "optimizer_slots",
           "reset_slots", "table_pool"]
