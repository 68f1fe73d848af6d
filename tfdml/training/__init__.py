"""Training glue: config -> data, model and optimizer; the run loop with checkpoints and resume; protocols."""

from tfdml.training.protocol import run_protocol
from tfdml.training.runner import run

__all__ = ["run", "run_protocol"]
