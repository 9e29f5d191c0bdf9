"""``shoestring.train(config)``: the Python API behind ``shoestring train``.

In order: resolve the price and the run folder (refusing a resume that would
change what is trained), load the problem (data + architecture, after the
recipe), build the module (warm-started from ``init_from``, with the hooks'
transforms), restore the latest good checkpoint, assemble the loop's parts
(``hooks.setup`` may wrap them), open the ledger row, run
:func:`engine.run_loop`, and save the run folder and the row (rank 0 only).
Clock, environment, ledger and reporter are passed in; nothing here prints
or exits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from shoestring.data.array_cache import default_array_cache
from shoestring.data.sources import SourceOptions, prepared_folder
from shoestring.errors import ConfigError, ShoestringError
from shoestring.io import atomic_write_bytes, is_encrypted_path
from shoestring.ledger.runs import RunLedger
from shoestring.models.run_folder import RunFolder, default_run_name, save_run
from shoestring.train.base_model import Base
from shoestring.train.build import (
    Parent,
    assemble_parts,
    build_run_model,
    resolve_parent,
    restore_checkpoint,
    run_card,
)
from shoestring.train.checkpoint import TrainingState, has_checkpoints
from shoestring.train.compile_choice import AutoCompile
from shoestring.train.config import TrainConfig, read_toml, resolve_config, resolve_price
from shoestring.train.distributed import (
    DistInfo,
    destroy_process_group,
    info_from_env,
    init_process_group,
    mean_over_ranks,
)
from shoestring.train.engine import LoopIO, LoopOutcome, LoopSettings, run_loop, total_steps
from shoestring.train.eta import SlowRunNotice
from shoestring.train.finetune import (
    merged_for_saving,
    recipe_hooks,
    settled,
    trainable_note,
)
from shoestring.train.hooks import TrainHooks, TrainingParts, augmentation
from shoestring.train.phases import PhaseClock
from shoestring.train.precision import Precision, choose_precision
from shoestring.train.problem import Problem, load_problem
from shoestring.train.reporter import Reporter, SilentReporter
from shoestring.train.run_record import LedgerRow, open_run_ledger
from shoestring.train.session import (
    choose_micro_batch,
    make_checkpointer,
    stop_on_signals,
    summarize,
)
from shoestring.train.stepper import Stepper
from shoestring.train.stopping import Budget, on_validation, parse_target
from shoestring.train.table_defaults import TABLE_DEFAULT_FIELDS
from shoestring.train.threads import AutoThreads

# Fields a resumed run may change: budgets and resources, not what is being trained.
RESUMABLE_CHANGES = {("train", "max_time"), ("train", "max_cost"), ("train", "price_per_hour"),
                     ("train", "threads"), ("train", "nproc"), ("train", "nnodes"),
                     ("train", "rdzv_endpoint"), ("train", "max_restarts"),
                     ("train", "micro_batch_size"), ("train", "max_memory"), ("train", "compile"),
                     ("train", "max_steps"), ("train", "epochs"), ("train", "eval_every"),
                     ("train", "checkpoint_every"), ("train", "device"), ("train", "plan_first"),
                     ("resume",), ("name",), ("out",)}
# A finished run resumed with a larger max_steps or epochs trains on; the
# schedule is a function of the total, so use a constant one when extending.


@dataclass(frozen=True)
class RunResult:
    """What a finished (or stopped) run left behind."""

    out_dir: Path
    run_id: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class RunContext:
    """Where and how this process takes part in the run (fixed before any data loads)."""

    info: DistInfo
    device: torch.device
    folder: RunFolder
    name: str
    hooks: TrainHooks
    kind: str | None
    reporter: Reporter
    clock: Callable[[], float]
    handle_signals: bool

    @property
    def main(self) -> bool:
        return self.info.is_main


def _config_differences(a: dict, b: dict, prefix: tuple = (),
                        derived: frozenset = frozenset()) -> list[str]:
    diffs = []
    for key in sorted(set(a) | set(b)):
        path = prefix + (key,)
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs += _config_differences(va, vb, path, derived)
        elif va != vb and path not in RESUMABLE_CHANGES and path not in derived:
            diffs.append(f"{'.'.join(path)}: checkpointed run has {va!r}, now {vb!r}")
    return diffs


def resolve_run_folder(config: TrainConfig, now: datetime) -> tuple[Path, str]:
    """The run folder and run name: given, or ``runs/<model>-<data>-<time>``."""
    name = config.name or (config.out.name if config.out else
                           default_run_name(config.model.name, config.data.source, now))
    return config.out or Path("runs") / name, name


def _resolve_out(config: TrainConfig, now: datetime, info: DistInfo) -> tuple[Path, str]:
    if config.out is None and info.active:
        raise ShoestringError("a multi-process run needs an explicit run folder",
                              hint="pass --out DIR (the launcher does this for you)")
    return resolve_run_folder(config, now)


def resolve_device(requested: str, info: DistInfo) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ShoestringError("--device cuda but no CUDA device is visible",
                                  hint="use --device cpu, or check the driver/CUDA_VISIBLE_DEVICES")
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def _check_resume(config: TrainConfig, folder: RunFolder, reporter: Reporter) -> dict | None:
    """Refuse a resume that would change what is trained; return a finished summary."""
    if config.resume and folder.config.exists():
        saved = resolve_config(read_toml(folder.config))
        # Table defaults derive these from the data when unset; the saved run holds
        # what they derived, and deriving again from the same data gives the same.
        derived = frozenset(("train", f) for f in TABLE_DEFAULT_FIELDS
                            if f not in config.train.model_fields_set)
        diffs = _config_differences(saved.model_dump(mode="json"), config.model_dump(mode="json"),
                                    derived=derived)
        if diffs:
            raise ConfigError(diffs, hint="resume with the run's own settings: drop the changed "
                              "flags, or start a new run with another --out")
        done = folder.read_json(folder.summary)
        extends = (config.train.max_steps, config.train.epochs) != \
            (saved.train.max_steps, saved.train.epochs)
        if done and done.get("status") == "finished" and not extends:
            reporter.log(f"run in '{folder.path}' already finished; nothing to resume")
            return done
    elif not config.resume and has_checkpoints(folder.checkpoints):
        raise ShoestringError(f"run folder '{folder.path}' already holds a run",
                              hint="pass --resume to continue it, or choose another --out")
    return None


def train(
    config: TrainConfig,
    *,
    init_from: str | Path | None = None,
    hooks: TrainHooks | None = None,
    kind: str | None = None,
    ledger: RunLedger | str | None = "auto",
    reporter: Reporter | None = None,
    clock: Callable[[], float] = time.perf_counter,
    now: Callable[[], datetime] = datetime.now,
    handle_signals: bool = True,
    source_options: SourceOptions | None = None,
    environ: Mapping[str, str] | None = None,
    workspace: Path | None = None,
    startup_seconds: float | None = None,
) -> RunResult:
    """Train the model ``config`` describes; return its run folder and summary.

    ``init_from`` (a run folder, or a run's id or name in the ledger) starts
    from that run's weights, which must fit this run's architecture; the new
    run records it as its parent. ``hooks`` extend the loop
    (:class:`~shoestring.train.hooks.TrainHooks`: batch transform, loss, after
    backward, after the optimizer step, on eval, on checkpoint, setup).
    ``kind`` is what the ledger calls the run (default ``finetune`` with
    ``init_from``, else ``train``).

    The run is recorded in the ledger: ``"auto"`` opens the one ``--db`` would
    ($SHOESTRING_DB, else ``WORKSPACE/.shoestring/ledger.db``), a URL or a
    :class:`RunLedger` names another, ``None`` records nothing.

    >>> from shoestring.train.config import resolve_config
    >>> cfg = resolve_config({"train": {"epochs": 1}, "out": "/tmp/ss-doctest"})
    >>> train(cfg).summary["status"]                    # doctest: +SKIP
    'finished'
    """
    environ = os.environ if environ is None else environ
    workspace = workspace or Path.cwd()
    info = info_from_env(environ)
    config = resolve_price(config, environ)
    if init_from is not None:
        config = config.model_copy(update={"init_from": str(init_from)})
    if info.restart > 0:  # an elastic restart continues from the latest checkpoint
        config = config.model_copy(update={"resume": True})
    reporter = (reporter or SilentReporter()) if info.is_main else SilentReporter()
    out, name = _resolve_out(config, now(), info)
    folder = RunFolder(out)
    if config.encrypt and info.is_main:
        from shoestring.crypto.folder import encrypt_output

        encrypt_output(folder.path)
    elif info.is_main and (prepared := prepared_folder(config.data.source)) is not None \
            and is_encrypted_path(prepared):
        reporter.warn(f"the data '{config.data.source}' is encrypted but the run folder will not "
                      "be: pass --encrypt to encrypt the weights and metrics too")
    finished = _check_resume(config, folder, reporter)
    if finished is not None:
        return RunResult(out, folder.run_id() or "", finished)
    device = resolve_device(config.train.device, info)
    ctx = RunContext(info, device, folder, name, hooks or TrainHooks(), kind, reporter, clock,
                     handle_signals)
    with open_run_ledger(ledger, info, environ, workspace) as run_ledger:
        init_process_group(info, device)
        try:
            return _train(ctx, config, run_ledger, source_options, workspace, startup_seconds)
        finally:
            destroy_process_group(info)


def _load_problem(ctx: RunContext, config: TrainConfig, source_options: SourceOptions | None,
                  workspace: Path, parent: Parent | None = None
                  ) -> tuple[Problem, TrainConfig]:
    """The data and architecture (after the recipe), checked against the plan if asked."""
    options = config.data.source_options(config.train.seed, source_options)
    options = replace(options, cache_dir=options.cache_dir or default_array_cache(workspace))
    start = Base(parent.path, parent.card) if parent is not None else None
    problem, config, recipe_notes = load_problem(config, options, ctx.device, workspace,
                                                 ctx.info, start)
    for note in problem.notes + recipe_notes + list(ctx.hooks.notes):
        ctx.reporter.log(note)
    if config.train.plan_first:
        from shoestring.plan.preflight import check_fits

        verdict = check_fits(config, arch=problem.arch, n_train=problem.n_train,
                             device=ctx.device.type)
        for line in verdict.lines:
            ctx.reporter.log(line)
        if not verdict.fits:
            raise ShoestringError(f"plan: {verdict.reason}", hint=verdict.suggestion)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    return problem, config


def _write_run_files(ctx: RunContext, config: TrainConfig, state: TrainingState) -> None:
    """The resolved config, and metrics no later than the checkpoint resumed from."""
    if not ctx.main:
        return
    folder = ctx.folder
    if state.global_step == 0 and folder.metrics.exists():
        folder.metrics.unlink()
    folder.truncate_metrics(state.global_step)
    resolved = config.model_copy(update={"out": folder.path, "name": ctx.name, "resume": False})
    atomic_write_bytes(folder.config, resolved.to_toml().encode())


def _train(ctx: RunContext, config: TrainConfig, ledger: RunLedger | None,
           source_options: SourceOptions | None, workspace: Path,
           startup_seconds: float | None = None) -> RunResult:
    phases = PhaseClock(ctx.clock)
    # The parent first: a fine-tune reads its data with the base's tokenizer and shape.
    parent = resolve_parent(config.init_from, ledger) if config.init_from else None
    with phases.phase("data"):
        problem, config = _load_problem(ctx, config, source_options, workspace, parent)
    kind = ctx.kind or ("finetune" if parent else "train")
    # Fine-tuning recipes and memory savers are hooks too (train/finetune.py).
    config = settled(config, ctx.info.world)
    recipe = recipe_hooks(config, problem, parent, ctx.device.type, ctx.info.world)
    ctx = replace(ctx, hooks=recipe.then(ctx.hooks))
    privacy = None
    if config.privacy is not None:  # DP-SGD: the last hooks, around everything else
        from shoestring.train.privacy import PrivateTraining

        privacy = PrivateTraining(config, problem, ctx.info.world)
        ctx = replace(ctx, hooks=ctx.hooks.then(privacy.hooks()))
    warm_notes: list[str] = []
    model = build_run_model(problem, config, ctx.device, parent, ctx.hooks, warm_notes)
    for note in warm_notes + list(recipe.notes) + [trainable_note(model)]:
        ctx.reporter.log(note)
    cfg = config.train
    precision, precision_why = choose_precision(
        cfg.precision, ctx.device, problem.arch["family"], cfg.activation_checkpointing,
        privacy is not None)
    ctx.reporter.log(f"precision: {precision_why}")
    ctx.folder.create()
    state, ckpt = restore_checkpoint(config, ctx.folder, model, ctx.reporter)
    if privacy is not None:
        privacy.restore(state)
    parts, wrapped = assemble_parts(model, problem, config, ctx.info, ctx.device, ckpt,
                                    ctx.hooks)
    for note in privacy.notes(parts.model) if privacy is not None else []:
        ctx.reporter.log(note)
    _write_run_files(ctx, config, state)
    run_id = ctx.folder.run_id() if config.resume else None
    row = LedgerRow(ledger, ctx.clock, state.elapsed_seconds, cfg.price_per_hour)
    row.open(name=ctx.name, model=config.model.name, data=config.data.source,
             out_dir=str(ctx.folder.path.resolve()), device=str(ctx.device),
             config=config.model_dump(mode="json"), run_id=run_id, kind=kind,
             parent_id=parent.run_id if parent else None)
    try:
        run_id = run_id or row.id or os.urandom(16).hex()
        if ctx.main:
            ctx.folder.write_json(ctx.folder.run_info, {"id": run_id, "name": ctx.name})
        outcome, micro, extras, restore_threads = _train_loop(
            ctx, config, problem, parts, wrapped, precision, state, phases, privacy)
        final = {}
        try:
            if problem.make_test_evaluate is not None:  # the test split, scored once
                with phases.phase("eval"):
                    final = problem.make_test_evaluate(parts.model, micro or cfg.batch_size)()
        finally:  # scored on the thread count training measured best (a busy machine)
            restore_threads()
        summary = summarize(config, problem, outcome, parts.model, ctx.device, precision, micro,
                            run_id, ctx.name, ctx.info)
        summary.update(kind=kind, parent_run=parent.run_id if parent else None,
                       trainable_parameters=sum(p.numel() for p in parts.model.parameters()
                                                if p.requires_grad))
        summary.update(final)
        summary.update(extras, precision_requested=cfg.precision, precision_note=precision_why)
        if privacy is not None:
            summary["privacy"] = privacy.summary()
        if ctx.main:
            with phases.phase("write"):
                model, card = parts.model, run_card(problem, kind, parent, ctx.hooks)
                if cfg.merge:
                    model, card = merged_for_saving(model, card, problem, parent)
                save_run(ctx.folder.path, model, card, tokenizer=problem.tokenizer)
            summary["seconds"] = phases.breakdown(startup_seconds)
            ctx.folder.write_json(ctx.folder.summary, summary)
            row.finish(summary)
        return RunResult(ctx.folder.path, run_id, summary)
    except BaseException as exc:
        row.fail(exc)
        raise


def _loop_settings(config: TrainConfig) -> LoopSettings:
    cfg = config.train
    return LoopSettings(
        epochs=cfg.epochs, lr=cfg.lr, schedule=cfg.schedule, warmup_steps=cfg.warmup_steps,
        eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every,
        budget=Budget(cfg.max_time, cfg.max_cost, cfg.price_per_hour),
        # Checked on the validation split: test_X targets mean val_X (stopping.on_validation).
        target=on_validation(parse_target(cfg.target)) if cfg.target else None,
        max_steps=cfg.max_steps)


def _train_loop(ctx: RunContext, config: TrainConfig, problem: Problem, parts: TrainingParts,
                wrapped: torch.nn.Module, precision: Precision, state: TrainingState,
                phases: PhaseClock, privacy=None
                ) -> tuple[LoopOutcome, int | None, dict, Callable[[], None]]:
    """Choose the micro-batch, then run the loop under the signal handlers; return what
    the loop gave, and what gives the process back its thread count (once the test split
    is scored: with two threads beside a busy process, that evaluation alone took 0.24 s
    instead of 0.02 s)."""
    cfg, info = config.train, ctx.info
    # DP-SGD steps each (Poisson-sized) batch whole: no accumulation, no trial steps.
    micro, note = (None, None) if privacy is not None else choose_micro_batch(
        cfg, parts.model, parts.forward_model, parts.loss_of, parts.source, ctx.device,
        precision, info)
    if note:
        ctx.reporter.log(note)
    hooks = ctx.hooks
    if config.data.augment:
        # Provided by the data-preparation capability.
        from shoestring.data.augment import build_augmentation

        aug = build_augmentation(config.data.augment, problem.card.input_shape, cfg.seed)
        hooks = augmentation(aug).then(hooks)
    stepper = Stepper(parts.forward_model, parts.optimizer, parts.loss_of, precision, micro,
                      cfg.grad_clip, hooks=hooks,
                      sync_model=wrapped if info.active and cfg.strategy == "ddp" else None,
                      on_micro_batch=lambda done, n: ctx.reporter.micro_batch(
                          state.global_step, done, n))
    settings = _loop_settings(config)
    if privacy is not None:  # never past the steps the noise was planned for
        settings.max_steps = privacy.step_limit(
            settings.max_steps, total_steps(settings, parts.source.steps_per_epoch))
    steps_left = total_steps(settings, parts.source.steps_per_epoch) - state.global_step
    extras: dict = {"compile": {"used": bool(cfg.compile), "auto": False}}
    auto_compile = auto_threads = None
    if cfg.compile is None and not info.active and privacy is None:  # decided from the first steps' timings
        auto_compile = stepper = AutoCompile(
            stepper, steps_left,
            time_left=cfg.max_time - state.elapsed_seconds if cfg.max_time else None,
            log=ctx.reporter.log)
    if cfg.threads is None and ctx.device.type == "cpu" and not info.active and \
            torch.get_num_threads() > 1:
        auto_threads = stepper = AutoThreads(stepper, torch.get_num_threads(),
                                             log=ctx.reporter.log)
    if ctx.main:
        stepper = SlowRunNotice(
            stepper, steps_left, log=ctx.reporter.log,
            hint="convolutions are slow on a CPU: --model seed-mlp trains in seconds"
            if problem.arch["family"] == "cnn" and ctx.device.type == "cpu" else "")
    if settings.target is not None:
        extras["target_metric"] = settings.target.metric
    checkpointer = make_checkpointer(ctx.folder, wrapped, parts.optimizer, info, cfg.strategy)
    with stop_on_signals(ctx.handle_signals) as should_stop:
        io = LoopIO(
            evaluate=phases.timed("eval", problem.make_evaluate(parts.model,
                                                                micro or cfg.batch_size)),
            worth_full_eval=phases.timed("eval", problem.make_screen(parts.model,
                                                                     settings.target)),
            on_eval=ctx.folder.append_metrics if ctx.main else (lambda record: None),
            on_checkpoint=phases.timed("write", checkpointer),
            should_stop=should_stop, clock=ctx.clock, reporter=ctx.reporter, dist=info,
            train_loss_of=lambda v: mean_over_ranks(v, info))
        try:
            outcome = run_loop(stepper, parts.source, settings, state, io, hooks)
        finally:  # the last checkpoint is written before anything else happens
            phases.timed("write", checkpointer.wait)()
    if privacy is not None:
        privacy.explain_stop(outcome)
    if auto_compile is not None:
        extras.update(auto_compile.report())
    if auto_threads is not None:
        extras.update(auto_threads.report(), threads=torch.get_num_threads())
    return outcome, micro, extras, auto_threads.restore if auto_threads else (lambda: None)


__all__ = ["Parent", "RunResult", "TrainHooks", "train"]
