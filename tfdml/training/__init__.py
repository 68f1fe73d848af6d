"""Training glue: config -> data, model and optimizer; the run loop with checkpoints and resume."""

from tfdml.training.runner import run

__all__ = ["run"]
