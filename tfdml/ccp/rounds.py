"""CCP's rounds as an explicit loop inside `fit`: validate, decide, re-seed, regularise.

`CCPRounds` is a callback that first makes sure this epoch's validation metric exists (it runs the
`RetrievalValidation` itself if that has not run yet, so callback order cannot make it act on the
previous epoch's metric), then decides:

- a validation above this round's best by more than 1e-5 becomes the round best: the round state
  keeps its value, the network's weights and the proxies (a round's first validation always does);
- `patience` validations in a round without a new round best start a new round: `theta* <- the
  round best's weights`, `lambda <- lambda0 * decay**(round - 1)`, and the proxies are re-seeded by
  greedy k-center from a pool of `pool_size` random training images per class embedded with the
  current network, starting from the round best's proxies, with their optimizer state reset; the
  round best is then reset. Training goes on from the current weights, not the round best's;
- `stop_patience` validations without improving the global best (`RetrievalValidation`'s) stop
  training, before any new round; the validation callback then restores the global best weights.

This is the original code's `AlternatingProjectionCallback.stepFn` (ccp-dml 204b22c,
framework/losses/ccp/callback.py:216-242) with its defaults (loss.py:26-31: one validation per epoch,
patience 3, MAP@R maximised). Its rounds count from 0 (`global_step`, 0 until the first re-seeding,
lambda 0 while it is 0, then `lambda0 * decay**global_step`, callback.py:179-189); ours count from
1, so round `r >= 2` has `lambda0 * decay**(r - 1)` and round 1 has lambda 0.

`warmup_epochs > 0` (not in the paper) trains the pair term alone for that many epochs ("round 0")
before round 1 seeds the proxies: the paper starts from ImageNet weights, whose embeddings already
separate classes, while proxies seeded from a randomly initialised network are nearly one point.

The callback is handed what it acts on (the CCP objective, the proximal term with its `RoundState`,
the validation callback); `tfdml.ccp.CCP.rounds` builds it. All state lives in the model's
`ProximalTerm` weights (the round best included), so a checkpoint resumes the same round with the
same round best.
Every validated epoch adds `ccp_round`, `ccp_lambda` and `ccp_best` to the epoch's logs (TensorBoard,
the progress bar, `metrics.json`), and an epoch that re-seeds adds `ccp_proxies_moved`.

Example (a notebook; it needs a dataset and a CCP model, so it is not run as a doctest):
    >>> validation = RetrievalValidation(val_ds)                                         # doctest: +SKIP
    >>> rounds = ccp.rounds(validation, table_pool(train_table, 12, eval_fn, seed=0))    # doctest: +SKIP
    >>> model.fit(train_ds, epochs=100, steps_per_epoch=25, callbacks=[validation, rounds])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np

from tfdml.ccp.kcenter import greedy_k_center, pack_by_class
from tfdml.ccp.objective import CCPLoss, ProximalTerm
from tfdml.ccp.state import RoundState
from tfdml.losses import core
from tfdml.data.table import DatasetTable
from tfdml.evaluation.callback import RetrievalValidation, embed_dataset
from tfdml.evaluation.progress import Verbose

Pool = Callable[[keras.Model, int], tuple[np.ndarray, np.ndarray]]


def table_pool(table: DatasetTable, pool_size: int, dataset_fn: Callable[[DatasetTable], Any], seed: int = 0,
               verbose: Verbose = 0) -> Pool:
    """A pool function: `pool_size` random images per class of `table` (all of a smaller class), drawn anew
    each round (seeded by `(seed, round)`), embedded with evaluation preprocessing (`dataset_fn`), with a
    Progbar when `verbose` (0, 1, 2, "auto"): at SOP scale a pool is some 135,000 images.

    Returns embeddings and the dense labels `0..C-1` that index the proxies.
    """
    dense = table.dense_labels()
    by_class = [np.flatnonzero(dense == c) for c in range(dense.max() + 1)]

    def pool(model: keras.Model, round_: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((seed, round_))
        rows = np.concatenate([rng.permutation(r)[:pool_size] for r in by_class])
        embeddings, _ = embed_dataset(model, dataset_fn(table.select(rows)), verbose=verbose)
        return embeddings, dense[rows]

    return pool


def optimizer_slots(optimizer: keras.optimizers.Optimizer, variable: Any, others: Sequence = ()) -> list:
    """The optimizer's variables made for `variable` (moments, velocities, ...), found in `optimizer.variables`.

    Keras names a slot `<variable.path, "/" as "_">_<slot name>` (`Optimizer.add_variable_from_reference`),
    with the variable's shape; a slot that also matches the longer path of one of `others` is theirs.
    """
    def prefix(v: Any) -> str:
        return v.path.replace("/", "_") + "_"

    own = prefix(variable)
    longer = [p for p in map(prefix, others) if p.startswith(own) and p != own]
    return [s for s in optimizer.variables if s.name.startswith(own) and tuple(s.shape) == tuple(variable.shape)
            and not any(s.name.startswith(p) for p in longer)]


def reset_slots(optimizer: keras.optimizers.Optimizer, variable: Any, others: Sequence = ()) -> int:
    """Zero the optimizer's slots of `variable` (see `optimizer_slots`); return how many were reset."""
    slots = optimizer_slots(optimizer, variable, others)
    for slot in slots:
        slot.assign(np.zeros(slot.shape, slot.dtype))
    return len(slots)


def unit_ball(x: np.ndarray) -> np.ndarray:
    """The loss's unit-ball projection (`tfdml.losses.core.unit_ball`), on numpy arrays."""
    return np.asarray(core.unit_ball(np.asarray(x, np.float32)))


class CCPRounds(keras.callbacks.Callback):
    """CCP's round logic (see the module docstring) on `loss`'s proxies and `proximal`'s state, following
    `validation`'s metric. The model it trains (set by `fit`) must hold `loss` and `proximal`."""

    def __init__(self, loss: CCPLoss, proximal: ProximalTerm, validation: RetrievalValidation, pool: Pool, *,
                 lambda0: float = 2e-4, decay: float = 1.0, patience: int = 3, stop_patience: int = 60,
                 warmup_epochs: int = 0, log: Callable[[str], None] = print) -> None:
        super().__init__()
        if not isinstance(loss, CCPLoss) or not isinstance(proximal, ProximalTerm):
            raise ValueError("CCPRounds needs a CCPLoss and a ProximalTerm (tfdml.ccp.CCP builds them)")
        self.loss, self.proximal = loss, proximal
        self.validation, self.pool, self.log, self.warmup_epochs = validation, pool, log, warmup_epochs
        self.lambda0, self.decay, self.patience, self.stop_patience = lambda0, decay, patience, stop_patience
        self.events: list[dict] = []  # one per round start, for logs and tests

    @property
    def state(self) -> RoundState:
        if self.proximal.rounds is None:
            raise ValueError("the proximal term is not built: build the model that holds it first")
        return self.proximal.rounds

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.state.current > 0:  # resumed: the checkpoint holds the round and the proxies
            return
        if self.warmup_epochs > 0:
            self.loss.proxy_term_on.assign(0.0)
            self.log(f"CCP warm-up: {self.warmup_epochs} epochs of the pair term alone before round 1")
        else:
            self.first_round()

    def first_round(self) -> None:
        """Round 1: proxies seeded by k-center from the pool, the proxy term on, lambda 0."""
        self.reseed(previous=None)
        self.loss.proxy_term_on.assign(1.0)
        self.state.start_round(1)
        self.log("CCP round 1: proxies seeded by k-center from the pool; lambda 0")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        validation = self.validation
        validation.on_epoch_end(epoch, logs)  # the metric of *this* epoch, before any decision
        if not validation.validated(epoch):
            return
        state = self.state
        state.track_global(validation.improved_at(epoch), validation.best_value)
        state.track_round(validation.latest_value, self.model.network_variables(), self.loss.proxies)
        if state.current == 0:  # warm-up: no rounds and no stop until the proxies exist
            if epoch + 1 >= self.warmup_epochs:
                self.first_round()
        elif int(state.since_improvement.numpy()) >= self.stop_patience:
            self.model.stop_training = True
            self.log(f"CCP: no improvement in {self.stop_patience} validations; stopping after round "
                     f"{state.current} (best {validation.monitor} {validation.best_value:.4f} "
                     f"at epoch {validation.best_epoch})")
        elif int(state.since_round.numpy()) >= self.patience:
            self.new_round(epoch)
        self.report(epoch, logs)

    def report(self, epoch: int, logs: dict | None) -> None:
        state = self.state
        progress = {"ccp_round": state.current, "ccp_lambda": float(self.proximal.lam.numpy()),
                    "ccp_best": float(state.best.numpy())}
        if self.events and self.events[-1]["epoch"] == epoch + 1:  # a re-seeding this epoch: how far they moved
            progress["ccp_proxies_moved"] = self.events[-1]["moved"]
        self.validation.annotate(progress)  # kept in checkpoints' state and metrics.json
        if logs is not None:
            logs.update(progress)  # TensorBoard and the progress bar

    def new_round(self, epoch: int) -> None:
        """theta* and the k-center start from this round's best; lambda for the next round; reset its best."""
        state = self.state
        round_ = state.current + 1
        lam = self.lambda0 * self.decay ** (round_ - 1)
        best_value = float(state.round_best.numpy())
        self.proximal.set_anchor(state.round_best_weights)
        self.proximal.lam.assign(lam)
        state.round.assign(round_)  # the pool of the re-seeding is drawn for the new round
        moved = self.reseed(previous=state.round_best_proxies.numpy())
        state.start_round(round_)
        self.events.append({"epoch": epoch + 1, "round": round_, "lambda": lam, "moved": moved})
        self.log(f"CCP round {round_} after epoch {epoch + 1}: lambda {lam:.3g}, previous round's best "
                 f"{self.validation.monitor} {best_value:.4f}, proxies moved {moved:.4f} on average")

    def reseed(self, previous: np.ndarray | None) -> float:
        """Replace the proxies by greedy k-center picks from the pool, reset their optimizer state, and
        return the mean distance they moved."""
        bank = self.loss.bank
        c, k = bank.num_classes, bank.proxies_per_class
        embeddings, labels = self.pool(self.model, self.state.current)
        pool, valid = pack_by_class(unit_ball(embeddings), labels, c)  # the space the loss compares in
        old = bank.proxies.numpy()
        start = (np.asarray(bank.per_class(unit_ball(previous))) if previous is not None
                 else np.zeros((c, 0, embeddings.shape[1])))
        chosen = greedy_k_center(pool, valid, start, k)
        bank.reseed(pool[np.arange(c)[:, None], chosen])  # [C, K, D]
        # Old moments would push the new proxies along their predecessors' gradients.
        reset_slots(self.model.optimizer_for("loss"), bank.proxies, self.model.trainable_variables)
        return float(np.linalg.norm(bank.proxies.numpy() - unit_ball(old), axis=1).mean())
