"""Under MirroredStrategy over 2 logical CPUs, a step equals one device's step on the same global batch
(pair and proxy losses, a cross-batch memory, Metrix mixing, and a CCP round between steps).

Each case runs in a fresh interpreter, because logical devices must be configured before TensorFlow
initialises its devices (which the rest of the suite has long done).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tfdml.distribute import STRATEGIES, gather_across_replicas, get_strategy, num_replicas, replica_scale

SCRIPT = Path(__file__).parent / "scripts" / "distributed_step.py"


@pytest.mark.parametrize("loss, args, steps", [
    ("multi_similarity", {"mining_epsilon": None}, 1),
    ("proxy_anchor", {"num_classes": 4}, 1),
    ("contrastive", {"distance": "cosine", "pos_margin": 1.0, "reduction": "per_anchor", "xbm": 32}, 2),
    # Metrix: the same pairs and lambdas on every replica (one seed state), mixed from the global batch.
    ("multi_similarity", {"mining_epsilon": None, "mixing": {"level": "feature", "max_mixtures": 8, "seed": 3}}, 2),
    ("multi_similarity", {"mining_epsilon": None, "mixing": {"level": "input", "max_mixtures": 8, "seed": 3}}, 2),
    ("ccp", {}, 3),  # a CCP round between the steps: k-center re-seeding, slots reset, proximal anchor
], ids=["multi_similarity", "proxy_anchor", "contrastive_xbm", "metrix_feature", "metrix_input", "ccp_round"])
def test_two_replicas_match_one_device(loss, args, steps):
    out = subprocess.run([sys.executable, str(SCRIPT), loss, json.dumps(args), str(steps)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["loss_mirrored"] == pytest.approx(result["loss_single"], rel=1e-5)
    assert result["max_update"] > 1e-3  # the step did move the weights...
    assert result["max_weight_diff"] < 1e-4 * max(1.0, result["max_update"])  # ...identically on both sides


def test_one_device_helpers_are_identities():
    assert num_replicas() == 1 and replica_scale() == 1.0
    assert gather_across_replicas(1, 2) == (1, 2)
    assert get_strategy("none").num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="choose one of none, mirrored, multi_worker"):
        get_strategy("horovod")
    assert STRATEGIES == ("none", "mirrored", "multi_worker")
