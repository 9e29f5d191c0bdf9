"""``shoestring.train(config)``: the Python API behind ``shoestring train``.

It loads the problem (data + architecture), applies the recipe, builds the
model on its device, restores the latest good checkpoint when resuming,
wraps the model for data parallelism, runs :func:`engine.run_loop`, and
writes the run folder and the ledger row (rank 0 only). Clock, environment,
ledger and reporter are passed in; nothing here prints or exits.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from shoestring.data.sources import SourceOptions
from shoestring.errors import ConfigError, ShoestringError
from shoestring.ledger.db import resolve_db_url
from shoestring.ledger.money import usd_to_nano
from shoestring.ledger.runs import RunLedger
from shoestring.models.registry import build_model
from shoestring.models.run_folder import RunFolder, default_run_name, save_run
from shoestring.train.checkpoint import TrainingState, has_checkpoints, load_latest_checkpoint
from shoestring.train.config import TrainConfig, read_toml, resolve_config, resolve_price
from shoestring.train.distributed import (
    DistInfo,
    destroy_process_group,
    info_from_env,
    init_process_group,
    mean_over_ranks,
    wrap_model,
)
from shoestring.train.engine import LoopSettings, run_loop
from shoestring.train.evaluate import loss_fn
from shoestring.train.optim import build_optimizer
from shoestring.train.precision import Precision, read_cpuinfo, resolve_precision
from shoestring.train.problem import load_problem
from shoestring.train.reporter import Reporter, SilentReporter
from shoestring.train.session import (
    choose_micro_batch,
    make_checkpointer,
    stop_on_signals,
    summarize,
)
from shoestring.train.stepper import Stepper, loss_function
from shoestring.train.stopping import Budget, cost_usd, parse_target

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


def _config_differences(a: dict, b: dict, prefix: tuple = ()) -> list[str]:
    diffs = []
    for key in sorted(set(a) | set(b)):
        path = prefix + (key,)
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs += _config_differences(va, vb, path)
        elif va != vb and path not in RESUMABLE_CHANGES:
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
        diffs = _config_differences(saved.model_dump(mode="json"), config.model_dump(mode="json"))
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


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ShoestringError):
        return exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def train(
    config: TrainConfig,
    *,
    ledger: RunLedger | str | None = "auto",
    reporter: Reporter | None = None,
    clock: Callable[[], float] = time.perf_counter,
    now: Callable[[], datetime] = datetime.now,
    handle_signals: bool = True,
    source_options: SourceOptions | None = None,
    environ: Mapping[str, str] | None = None,
    workspace: Path | None = None,
) -> RunResult:
    """Train the model ``config`` describes; return its run folder and summary.

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
    if info.restart > 0:  # an elastic restart continues from the latest checkpoint
        config = config.model_copy(update={"resume": True})
    reporter = (reporter or SilentReporter()) if info.is_main else SilentReporter()
    out, name = _resolve_out(config, now(), info)
    folder = RunFolder(out)
    finished = _check_resume(config, folder, reporter)
    if finished is not None:
        return RunResult(out, (folder.read_json(folder.run_info) or {}).get("id", ""), finished)

    device = resolve_device(config.train.device, info)
    owned = None
    if isinstance(ledger, str) and info.is_main:
        url = resolve_db_url(None, environ, workspace) if ledger == "auto" else ledger
        ledger = owned = RunLedger(url)
    elif not info.is_main or isinstance(ledger, str):
        ledger = None  # only rank 0 records the run
    init_process_group(info, device)
    try:
        return _train(config, info, device, folder, name, ledger, reporter, clock,
                      handle_signals, source_options, workspace)
    finally:
        destroy_process_group(info)
        if owned is not None:
            owned.close()


def _train(config, info, device, folder, name, ledger, reporter, clock, handle_signals,
           source_options, workspace) -> RunResult:
    base = source_options or SourceOptions()
    d = config.data
    options = SourceOptions(target=d.target, task=d.task, test_fraction=d.test_fraction,
                            seed=config.train.seed, fashion_mnist_dir=base.fashion_mnist_dir,
                            text_field=d.text_field, label_field=d.label_field,
                            tokenizer=d.tokenizer, bpe_vocab_size=d.bpe_vocab_size,
                            max_length=d.max_length)
    problem, config, recipe_notes = load_problem(config, options, device, workspace, info)
    for note in problem.notes + recipe_notes:
        reporter.log(note)
    cfg = config.train
    if cfg.plan_first:
        from shoestring.plan.preflight import check_fits

        verdict = check_fits(config, arch=problem.arch, n_train=problem.n_train,
                             device=device.type)
        for line in verdict.lines:
            reporter.log(line)
        if not verdict.fits:
            raise ShoestringError(f"plan: {verdict.reason}", hint=verdict.suggestion)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    torch.manual_seed(cfg.seed)  # initialisation and dropout; data order has its own generator
    model = build_model(problem.arch).to(device)
    if cfg.activation_checkpointing:
        if not hasattr(model, "set_activation_checkpointing"):
            raise ShoestringError(f"model {config.model.name!r} has no blocks to checkpoint",
                                  hint="activation checkpointing applies to transformers")
        model.set_activation_checkpointing(True)
    precision = Precision(resolve_precision(
        cfg.precision, device, read_cpuinfo(),
        device.type == "cuda" and torch.cuda.is_bf16_supported()), device.type)

    state = TrainingState()
    folder.create()
    run_id = (folder.read_json(folder.run_info) or {}).get("id") if config.resume else None
    ckpt = None
    if config.resume:
        ckpt, skipped = load_latest_checkpoint(folder.checkpoints)
        for w in skipped:
            reporter.warn(w)
        if ckpt is None:
            reporter.warn(f"no usable checkpoint in '{folder.checkpoints}'; starting from step 0")
        else:
            model.load_state_dict(ckpt.model_state)
            torch.set_rng_state(ckpt.rng_state)
            state = ckpt.state
            reporter.log(f"resumed from '{ckpt.path.name}' at step {state.global_step}")
    wrapped = wrap_model(model, info, cfg.strategy, device)
    optimizer = build_optimizer(wrapped, cfg)
    if ckpt is not None:
        from shoestring.train.distributed import load_optimizer_state

        load_optimizer_state(wrapped, optimizer, ckpt.optimizer_state, info, cfg.strategy)

    if info.is_main:
        if state.global_step == 0 and folder.metrics.exists():
            folder.metrics.unlink()
        folder.truncate_metrics(state.global_step)
        resolved = config.model_copy(update={"out": folder.path, "name": name, "resume": False})
        folder.config.write_text(resolved.to_toml())
    ledger_id = None
    session_start, elapsed_before = clock(), state.elapsed_seconds
    if ledger is not None and info.is_main:
        ledger_id = ledger.start(name=name, model=config.model.name, data=config.data.source,
                                 out_dir=str(folder.path.resolve()), device=str(device),
                                 config=config.model_dump(mode="json"), run_id=run_id,
                                 price_per_hour_nano_usd=usd_to_nano(cfg.price_per_hour))
    try:
        return _after_row_opens(config, info, device, folder, name, ledger, ledger_id, reporter,
                                clock, handle_signals, problem, model, state, precision,
                                wrapped, optimizer, run_id)
    except BaseException as exc:
        if ledger_id is not None:
            # Wall time from this session's start, not from the last checkpoint: a run
            # stopped in its first step still spent what it spent.
            wall = elapsed_before + (clock() - session_start)
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            ledger.finish(ledger_id, status=status, metrics={}, wall_seconds=wall,
                          cost_nano_usd=usd_to_nano(cost_usd(wall, cfg.price_per_hour)),
                          stop_reason="interrupted" if status == "interrupted" else "error",
                          error=_error_text(exc))
        raise


def _after_row_opens(config, info, device, folder, name, ledger, ledger_id, reporter, clock,
                     handle_signals, problem, model, state, precision, wrapped, optimizer,
                     run_id) -> RunResult:
    cfg = config.train
    run_id = run_id or ledger_id or os.urandom(16).hex()
    if info.is_main:
        folder.write_json(folder.run_info, {"id": run_id, "name": name})

    forward_model = torch.compile(wrapped) if cfg.compile else wrapped
    loss_of = loss_function(problem.arch["family"], loss_fn(problem.task))
    source = problem.make_source(cfg.batch_size, cfg.seed, info.rank, info.world)
    micro, micro_note = choose_micro_batch(cfg, model, forward_model, loss_of, source, device,
                                           precision, info)
    if micro_note:
        reporter.log(micro_note)
    stepper = Stepper(forward_model, optimizer, loss_of, precision, micro, cfg.grad_clip,
                      sync_model=wrapped if info.active and cfg.strategy == "ddp" else None)
    settings = LoopSettings(
        epochs=cfg.epochs, lr=cfg.lr, schedule=cfg.schedule, warmup_steps=cfg.warmup_steps,
        eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every,
        budget=Budget(cfg.max_time, cfg.max_cost, cfg.price_per_hour),
        target=parse_target(cfg.target) if cfg.target else None, max_steps=cfg.max_steps)
    transform = None
    if config.data.augment:
        # Provided by the data-preparation capability.
        from shoestring.data.augment import build_augmentation

        transform = build_augmentation(config.data.augment,
                                       problem.card.input_shape, cfg.seed)
    checkpoint = make_checkpointer(folder, wrapped, optimizer, info, cfg.strategy)
    with stop_on_signals(handle_signals) as should_stop:
        outcome = run_loop(
            stepper, source, settings, state,
            evaluate_fn=problem.make_evaluate(model, micro or cfg.batch_size),
            worth_full_eval=problem.make_screen(model, settings.target),
            clock=clock, reporter=reporter,
            on_eval=folder.append_metrics if info.is_main else (lambda record: None),
            on_checkpoint=checkpoint, should_stop=should_stop, batch_transform=transform,
            dist_info=info, train_loss_of=lambda v: mean_over_ranks(v, info))

    summary = summarize(config, problem, outcome, model, device, precision, micro, run_id, name,
                        info)
    if info.is_main:
        save_run(folder.path, model, problem.card, tokenizer=problem.tokenizer)
        folder.write_json(folder.summary, summary)
        if ledger_id is not None:
            ledger.finish(ledger_id, status=outcome.status, metrics=summary,
                          wall_seconds=summary["train_seconds"],
                          cost_nano_usd=summary["cost_nano_usd"],
                          stop_reason=summary["stop_reason"])
    return RunResult(folder.path, run_id, summary)
