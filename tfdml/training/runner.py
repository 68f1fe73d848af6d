"""One training run from a config: train, validate, checkpoint, test, export.

The run directory `<output_dir>/<name>/` holds `config.yaml` (fully resolved), `logs/` (TensorBoard),
`checkpoints/` (`last.keras`, `best.weights.h5`, `state.json`), `metrics.json` and `saved_model/`.
Running the same command again resumes from `last.keras`.

Example (not run as a doctest: it trains a run):
    >>> from tfdml.config import load_config
    >>> from tfdml.training import run
    >>> metrics = run(load_config("yaml_configs/emoji.yaml", ["train.epochs=2"]))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

from tfdml.ccp import table_pool
from tfdml.config import Config, load_config, save_config
from tfdml.data import DatasetTable, reraise_data_errors
from tfdml.distribute import get_strategy, is_chief, same_on_all_workers
from tfdml.errors import ArtifactError, ConfigError, non_finite_hint
from tfdml.evaluation import evaluate_retrieval, mix_embeddings, utilization
from tfdml.evaluation.callback import RetrievalValidation, embed_dataset
from tfdml.evaluation.neighbours import as_unit_rows
from tfdml.evaluation.progress import Verbose, resolve_verbose
from tfdml.export import export_saved_model
from tfdml.losses import unwrap
from tfdml.models.whitening import apply_whitening
from tfdml.training.builders import (build_ccp, build_data, build_model, build_optimizer, proxy_rate_warning,
                                     whitening_setting)
from tfdml.training.budget import FitScheduleToBudget, TimeBudget, apply_horizon
from tfdml.training.callbacks import NaNGuard, RunCheckpoint
from tfdml.training.jit import choose_jit_compile
from tfdml.training.lock import RunLock
from tfdml.training.neighbourhoods import NEIGHBOUR_POOL_SIZE, set_class_neighbourhoods
from tfdml.training.projector import write_projector
from tfdml.training.proxy_seeding import SEED_POOL_SIZE, SeedProxies
from tfdml.training.resume import restore, resume_state, set_rates_from_config
from tfdml.training.warmup import HeadWarmup
from tfdml.training.whiten import describe_raw, load_whitening, save_whitening, whiten_head


# Below this many training steps `jit_compile: auto` does not measure: the XLA compile alone (10-100 s on
# CPU) would cost more than it could save.
MIN_STEPS_TO_MEASURE_XLA = 200


def run(config: Config, log: Any = print, callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict[str, Any]:
    """Train `config` to the end (or resume it), then evaluate on the test classes and export.

    `callbacks` run after tfdml's own (validation, checkpointing), so they see `val_*` metrics.
    Under `distribute: multi_worker` every worker runs this; only the chief writes the run directory
    (the others read it to resume, so it must be on a filesystem they share) and tests and exports.
    The chief locks the run directory (`RUN_DIR/.lock`) while it runs: a second run of it fails at once.
    """
    if config.distribute == "multi_worker" and not is_chief():  # the chief holds the lock of the shared directory
        return _run(config, log, callbacks)
    with RunLock(Path(config.output_dir) / config.name):
        return _run(config, log, callbacks)


def _run(config: Config, log: Any, callbacks: Sequence[keras.callbacks.Callback]) -> dict[str, Any]:
    run_dir = Path(config.output_dir) / config.name
    keras.utils.set_random_seed(config.seed)
    state = resume_state(run_dir, config, log)
    # Before anything runs TensorFlow ops (the data checks decode images): MultiWorkerMirroredStrategy
    # configures collective ops, which TensorFlow accepts only at program start.
    strategy = get_strategy(config.distribute)

    data = build_data(config, log)
    log(f"data: {config.data.dataset}: {data.summary()}")
    steps = config.train.steps_per_epoch or len(data.sampler)
    if config.sampler.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(f"sampler.batch_size={config.sampler.batch_size} must be a multiple of the "
                          f"{strategy.num_replicas_in_sync} replicas of distribute={config.distribute}")
    chief = is_chief(strategy)
    if warning := proxy_rate_warning(config):
        log(warning)
    with strategy.scope():
        ccp = build_ccp(config, data.train.num_classes)  # None unless ccp.enabled
        model = build_model(config, num_classes=data.train.num_classes, ccp=ccp)
        model.compile(optimizer=build_optimizer(config, steps), lr_multipliers=config.optimizer.lr_multipliers,
                      jit_compile=config.train.jit_compile is True)  # `auto` is measured before fit
        model.build_optimizers()

    val_dataset = None
    whitening = whitening_setting(config)
    if len(data.val):
        val_dataset = data.eval_dataset(data.val, config, cache=config.data.cache_in_memory)
    elif ccp is not None:
        raise ConfigError("ccp.enabled needs validation classes (its rounds follow the validation metric), but the "
                          "split has none: set data.val_fraction > 0")
    elif whitening == "auto":
        raise ConfigError("model.whitening=auto chooses the shrinkage on the validation classes, but the split has "
                          "none: set data.val_fraction > 0, or a shrinkage such as model.whitening=0.2")
    else:
        log(f"no validation classes (data.val_fraction={config.data.val_fraction}): training all "
            f"{config.train.epochs} epochs without validation; the last epoch's weights are kept")
    validation = RetrievalValidation(val_dataset, monitor=config.eval.monitor,
                                     every_epochs=config.eval.every_epochs, ks=config.eval.ks,
                                     backend=config.eval.backend)
    validation.hint = non_finite_hint(config.optimizer.learning_rate)
    budget = TimeBudget(config.train.time_budget_s, strict=config.train.time_budget_strict)
    checkpoint = RunCheckpoint(run_dir / "checkpoints", validation, budget)
    start_epoch = 0
    if state is not None:
        start_epoch = restore(model, checkpoint, validation, budget, state)
        set_rates_from_config(model, config)
        log(f"resuming {run_dir} after epoch {start_epoch} (best val {config.eval.monitor} "
            f"{validation.best_value:.4f} at epoch {validation.best_epoch})")
    if not same_on_all_workers(strategy, start_epoch):  # workers on their own copies would diverge silently
        raise ConfigError(f"the workers of distribute=multi_worker resume from different epochs (this one: "
                          f"{start_epoch}); put output_dir on a filesystem all workers share")
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")

    out_of_time = config.train.time_budget_s is not None and budget.spent_s >= config.train.time_budget_s
    epochs = apply_horizon(model, budget, steps, config.train.epochs)  # a resumed run keeps its fitted schedule
    jit_report: dict[str, Any] = {"chosen": model.jit_compile}
    trained_epochs = start_epoch
    if start_epoch < epochs and not out_of_time:
        if config.sampler.neighbourhood > 1:  # before anything iterates the training data
            pool = table_pool(data.train, NEIGHBOUR_POOL_SIZE, lambda t: data.eval_dataset(t, config), config.seed,
                              verbose=config.train.verbose)
            set_class_neighbourhoods(data.sampler, model, pool, run_dir / "checkpoints" / "class_neighbours.npy", log)
        if config.train.jit_compile == "auto":
            jit_report = _choose_jit(model, data.train_dataset(config, start_epoch * steps), data.train, strategy, log,
                                     steps * (epochs - start_epoch))
        rounds = []
        if ccp is not None:  # after validation, before checkpointing: it acts on this epoch's metric
            pool = table_pool(data.train, ccp.pool_size, lambda t: data.eval_dataset(t, config), config.seed,
                              verbose=config.train.verbose)
            rounds = [ccp.rounds(validation, pool, log=log)]
        seeding = []
        if config.loss.proxy_init == "samples" and start_epoch == 0:  # a resumed run keeps its trained proxies
            pool = table_pool(data.train, SEED_POOL_SIZE, lambda t: data.eval_dataset(t, config), config.seed,
                              verbose=config.train.verbose)
            seeding = [SeedProxies(unwrap(model.metric_loss).bank, pool, log=log)]  # under a memory too
        callbacks = [
            *seeding,  # before the first step
            validation,  # before the rest: they log and checkpoint its val_* metrics
            *rounds,
            *([HeadWarmup(config.train.head_warmup_epochs, config.model.freeze_batchnorm, log,
                          freeze_until=config.model.freeze_until)]
              if config.train.head_warmup_epochs else []),
            NaNGuard(checkpoint.last_path, non_finite_hint(config.optimizer.learning_rate)),
            budget,
            *([FitScheduleToBudget(budget, config.train.epochs, steps, config.train.head_warmup_epochs, log)]
              if config.train.fit_schedule_to_budget else []),  # after the budget's clock, before the checkpoint
            *([checkpoint, keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False)] if chief else []),
            *callbacks,
        ]
        with reraise_data_errors(data.train):
            history = model.fit(data.train_dataset(config, start_epoch * steps), epochs=epochs,
                                initial_epoch=start_epoch, steps_per_epoch=steps, callbacks=callbacks,
                                verbose=resolve_verbose(config.train.verbose))  # Keras's `auto` draws a bar into files
        trained_epochs += len(history.epoch)
    elif validation.best_weights is not None:
        model.set_weights(validation.best_weights)
    if not chief:  # the chief tests, writes metrics and exports
        log(f"this worker's training is done; the chief tests, exports and writes {run_dir}")
        return {"best_val": {config.eval.monitor: validation.best_value, "epoch": validation.best_epoch},
                "validation": validation.history, "train_time_s": round(budget.spent_s, 1)}

    verbose = config.train.verbose
    train_set = test_set = whitened = None
    if whitening is not None:
        describe_raw(model.head)  # embed the raw descriptors once; the chosen whitening is applied in numpy
    with reraise_data_errors(data.table):
        if len(data.test) or whitening is not None:
            log(f"embedding the training split ({len(data.train)} images; for Metrix's utilization"
                + (" and the whitening)" if whitening is not None else ")"))
            train_set = embed_dataset(model, data.eval_dataset(data.train, config), verbose=verbose)
        if len(data.test):
            log(f"testing: embedding the test split ({len(data.test)} images)")
            test_set = embed_dataset(model, data.eval_dataset(data.test, config), verbose=verbose)
        if whitening is not None:
            val_set = embed_dataset(model, val_dataset) if val_dataset is not None else None
            whitened = whiten_head(model.head, whitening, train_set, val_set,
                                   lambda x, y: evaluate_table(x, y, data.val, config)[config.eval.monitor], log)
            save_whitening(whitened, run_dir / "checkpoints")
    test, skipped = None, None
    if test_set is not None:
        (embeddings, labels), (train_embeddings, train_labels) = test_set, train_set
        if whitened is not None:  # what the model now outputs, computed in numpy
            if whitened["shrinkage"] is not None:
                whitened["test_unwhitened"] = evaluate_table(
                    apply_whitening(embeddings, *model.head.whitening.unfitted()), labels, data.test, config)
            embeddings, train_embeddings = (apply_whitening(x, whitened["mean"], whitened["projection"])
                                            for x in (embeddings, train_embeddings))
        test = evaluate_table(embeddings, labels, data.test, config, verbose=verbose)
        # Metrix's utilization: test embeddings against the training ones (and their embedding-level mixtures),
        # on the unit sphere as in the paper (CCP's unit-ball outputs have norms below 1).
        embeddings, train_embeddings = as_unit_rows(embeddings), as_unit_rows(train_embeddings)
        test["utilization"] = utilization(embeddings, train_embeddings)
        if config.mixing.level != "none":
            mixed = mix_embeddings(train_embeddings, train_labels, len(train_labels), config.mixing.alpha, config.seed)
            test["utilization_mixed"] = utilization(embeddings, np.concatenate([train_embeddings, mixed]))
    else:
        skipped = f"no test classes (data.test_fraction={config.data.test_fraction}): the test evaluation was skipped"
        log(skipped)
    metrics = {
        "test": test,
        **({"test_skipped": skipped} if skipped else {}),
        "best_val": ({config.eval.monitor: validation.best_value, "epoch": validation.best_epoch}
                     if validation.history else None),  # None: no validation classes
        "validation": validation.history,
        "epochs": trained_epochs,  # a time budget can end a run before train.epochs
        "train_time_s": round(budget.spent_s, 1),
        "jit_compile": jit_report,
        **({"whitening": {k: v for k, v in whitened.items() if k not in ("mean", "projection")}} if whitened else {}),
        "data": data.summary(),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if test is not None:
        np.savez(run_dir / "test_embeddings.npz", embeddings=embeddings, labels=labels,
                 is_query=data.test.is_query, is_gallery=data.test.is_gallery)  # for ensembles (MLRC's 512D)
        log(f"test ({data.test.num_classes} held-out classes, {len(data.test)} images): "
            + ", ".join(f"{k} {v:.4f}" for k, v in test.items() if not k.startswith("num_")))
        projector = write_projector(run_dir / "logs" / "projector", embeddings, data.test, seed=config.seed)
        log(f"test embeddings for TensorBoard's projector: {projector} (tensorboard --logdir {run_dir / 'logs'})")
    if config.export.saved_model:
        path = export_saved_model(model, run_dir / "saved_model", image_size=config.data.image_size,
                                  resize=config.data.eval_resize)
        log(f"exported SavedModel: {path}")
    return metrics


def _choose_jit(model: Any, dataset: Any, table: DatasetTable, strategy: Any, log: Any,
                remaining_steps: int) -> dict[str, Any]:
    """`train.jit_compile: auto`: measure both ways on this model and batch (one device only)."""
    if strategy.num_replicas_in_sync > 1:
        log("jit_compile auto: not measured under tf.distribute; training without XLA")
        return {"chosen": False}
    if remaining_steps < MIN_STEPS_TO_MEASURE_XLA:
        log(f"jit_compile auto: {remaining_steps} steps are too few to repay an XLA compile; training without XLA")
        return {"chosen": False}
    with reraise_data_errors(table):
        return choose_jit_compile(model, dataset, log=log)


def evaluate_table(embeddings: np.ndarray, labels: np.ndarray, table: DatasetTable, config: Config,
                   backend: str | None = None, verbose: Verbose = 0) -> dict[str, float]:
    """Retrieval metrics of `table`'s embeddings as a run reports its test metrics (`metrics.json`).

    In-Shop style tables (some rows not query or not gallery) search their gallery with their
    queries; others retrieve among all their images. `backend` defaults to `config.eval.backend`;
    `verbose` (0, 1, 2, "auto") shows the blockwise search's progress.

    Example (not run as a doctest: it needs a trained run):
        >>> embeddings, labels = embed_dataset(model, data.eval_dataset(data.test, config))  # doctest: +SKIP
        >>> evaluate_table(embeddings, labels, data.test, config)["map@r"]  # doctest: +SKIP
    """
    masks = {} if table.is_query.all() and table.is_gallery.all() else {
        "query_mask": table.is_query, "gallery_mask": table.is_gallery}
    return evaluate_retrieval(embeddings, labels, ks=config.eval.ks, backend=backend or config.eval.backend,
                              compute_nmi=config.eval.nmi, seed=config.seed, verbose=verbose, **masks)


def load_run(run_dir: str | Path, weights: str = "best") -> tuple[Config, keras.Model]:
    """The config and the model of a finished (or interrupted) run, with the weights it was tested with.

    The model comes from `checkpoints/last.keras` with `best.weights.h5` loaded over it when there is
    one (the best validation epoch, as the run's test used); without it, the last epoch's weights.
    `weights="last"` keeps the last epoch's weights anyway (to see what model selection changed),
    unwhitened; `"best"` also sets the whitening the run fitted (`model.whitening`, `whitening.npz`).

    Example (not run as a doctest: it needs a trained run):
        >>> config, model = load_run("runs/emoji")  # doctest: +SKIP
        >>> model(images).shape  # doctest: +SKIP
        TensorShape([8, 128])
    """
    if weights not in ("best", "last"):
        raise ConfigError(f"weights={weights!r}: expected 'best' (the epoch the run tested) or 'last'")
    run_dir = Path(run_dir)
    hint = "expected a run directory that tfdml-train wrote (<output_dir>/<name>/ with config.yaml and checkpoints/)"
    if not run_dir.exists():
        raise ArtifactError(f"{run_dir} does not exist; {hint}")
    if not run_dir.is_dir():
        raise ArtifactError(f"{run_dir} is a file, not a run directory; {hint}")
    config_path, checkpoints = run_dir / "config.yaml", run_dir / "checkpoints"
    if not config_path.is_file():
        raise ArtifactError(f"{run_dir} is not a run directory: it has no config.yaml; {hint}")
    config = load_config(config_path)
    last, best = checkpoints / "last.keras", checkpoints / "best.weights.h5"
    if not last.is_file():
        raise ArtifactError(f"{run_dir} has no checkpoint ({last} is missing): the run has not finished an epoch; "
                            f"train it with `tfdml-train {config_path}` (rerunning resumes)")
    try:
        model = keras.models.load_model(last, compile=False)
        if weights == "best" and best.is_file():
            model.load_weights(best)
    except Exception as err:  # noqa: BLE001 - a damaged or foreign checkpoint
        raise ArtifactError(f"the checkpoint in {checkpoints} cannot be loaded ({type(err).__name__}: {err}); "
                            "it may be damaged or written by another tfdml version; retrain the run") from None
    if weights == "best":  # the whitening was fitted on the best epoch's embeddings
        load_whitening(model.head, checkpoints)
    return config, model
