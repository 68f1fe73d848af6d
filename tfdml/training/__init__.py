"""Training glue: config -> data, model and optimizer; the run loop with checkpoints and resume; protocols."""

from tfdml.training.protocol import run_protocol
from tfdml.training.runner import evaluate_table, load_run, run

__all__ = ["evaluate_table", "load_run", "run", "run_protocol"]
