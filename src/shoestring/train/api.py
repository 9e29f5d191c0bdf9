"""``shoestring.train(config)``: the Python API behind ``shoestring train``.

It resolves the recipe, loads the data, builds the model, restores the
latest good checkpoint when resuming, runs :func:`engine.run_loop`, and
writes the run folder and the ledger row. Clock, ledger and reporter are
passed in; nothing here prints or exits.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from shoestring.data.sources import SourceOptions, load_dataset
from shoestring.errors import ConfigError, ShoestringError
from shoestring.ledger.runs import RunLedger
from shoestring.models.artifact import save_model
from shoestring.models.registry import DataShape, architecture_for, build_model
from shoestring.train.checkpoint import TrainingState, encode_checkpoint, load_latest_checkpoint, \
    save_checkpoint
from shoestring.train.config import TrainConfig, read_toml, resolve_config
from shoestring.train.engine import LoopSettings, run_loop, steps_per_epoch
from shoestring.train.optim import build_optimizer
from shoestring.train.recipe import apply_recipe
from shoestring.train.reporter import Reporter, SilentReporter
from shoestring.train.run_folder import RunFolder, default_run_name
from shoestring.train.stopping import Budget, cost_usd, parse_target
from shoestring.train.tensors import prepare_tensors
from shoestring.types import Task

# Fields a resumed run may change: budgets, not what is being trained.
RESUMABLE_CHANGES = {("train", "max_time"), ("train", "max_cost"), ("train", "price_per_hour"),
                     ("train", "threads"), ("resume",), ("name",)}


@dataclass(frozen=True)
class RunResult:
    """What a finished (or stopped) run left behind."""

    out_dir: Path
    run_id: str
    summary: dict[str, Any]


@contextmanager
def _stop_on_signals(enabled: bool) -> Iterator[Callable[[], bool]]:
    """SIGTERM/SIGINT set a flag that the loop checks after each step.

    The loop then writes a checkpoint and returns, so a spot preemption or a
    Ctrl-C loses at most one step. Only the main thread can install handlers.
    """
    flag = threading.Event()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag.is_set
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum, _frame):
        if flag.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means "now"
        flag.set()

    for s in previous:
        signal.signal(s, handler)
    try:
        yield flag.is_set
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _config_differences(a: dict, b: dict, prefix: tuple = ()) -> list[str]:
    diffs = []
    for key in sorted(set(a) | set(b)):
        path = prefix + (key,)
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs += _config_differences(va, vb, path)
        elif va != vb and path not in RESUMABLE_CHANGES and path != ("out",):
            diffs.append(f"{'.'.join(path)}: checkpointed run has {va!r}, now {vb!r}")
    return diffs


def _description(arch: dict, task: Task, dataset, prepared) -> dict[str, Any]:
    return {
        "architecture": arch,
        "task": task.value,
        "input_shape": list(dataset.input_shape),
        "num_outputs": dataset.num_outputs,
        "preprocessing": prepared.preprocessing.to_dict(),
        "class_names": list(dataset.class_names) if dataset.class_names else None,
        "feature_names": list(dataset.feature_names) if dataset.feature_names else None,
        "output": "softmax" if task is Task.classification else "identity",
        "data": dataset.name,
    }


def _resolve_out(config: TrainConfig, now: datetime) -> tuple[Path, str]:
    name = config.name or (config.out.name if config.out else
                           default_run_name(config.model.name, config.data.source, now))
    out = config.out or Path("runs") / name
    return out, name


def train(
    config: TrainConfig,
    *,
    ledger: RunLedger | None = None,
    reporter: Reporter | None = None,
    clock: Callable[[], float] = time.perf_counter,
    now: Callable[[], datetime] = datetime.now,
    handle_signals: bool = True,
    source_options: SourceOptions | None = None,
) -> RunResult:
    """Train the model ``config`` describes; return its run folder and summary.

    >>> from shoestring.train.config import resolve_config
    >>> cfg = resolve_config({"train": {"epochs": 1}, "out": "/tmp/ss-doctest"})
    >>> train(cfg).summary["status"]                    # doctest: +SKIP
    'finished'
    """
    reporter = reporter or SilentReporter()
    out, name = _resolve_out(config, now())
    folder = RunFolder(out)
    if config.resume and folder.config.exists():
        saved = resolve_config(read_toml(folder.config))
        diffs = _config_differences(saved.model_dump(mode="json"), config.model_dump(mode="json"))
        if diffs:
            raise ConfigError(diffs, hint="resume with the run's own settings: drop the changed "
                              "flags, or start a new run with another --out")
        done = folder.read_json(folder.summary)
        if done and done.get("status") == "finished":
            reporter.log(f"run in '{out}' already finished; nothing to resume")
            return RunResult(out, (folder.read_json(folder.run_info) or {}).get("id", ""), done)
    elif not config.resume and (folder.checkpoints / "manifest.json").exists():
        raise ShoestringError(f"run folder '{out}' already holds a run",
                              hint="pass --resume to continue it, or choose another --out")

    options = source_options or SourceOptions()
    options = SourceOptions(target=config.data.target, task=config.data.task,
                            test_fraction=config.data.test_fraction, seed=config.train.seed,
                            fashion_mnist_dir=options.fashion_mnist_dir)
    dataset = load_dataset(config.data.source, options)
    config, recipe_notes = apply_recipe(config, len(dataset.train))
    for note in recipe_notes:
        reporter.log(note)
    cfg = config.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    prepared = prepare_tensors(dataset, config.data.normalize)

    torch.manual_seed(cfg.seed)  # initialisation and dropout; data order has its own generator
    arch = architecture_for(config.model, DataShape(dataset.input_shape, dataset.num_outputs))
    model = build_model(arch)
    optimizer = build_optimizer(model, cfg)
    state = TrainingState()

    folder.create()
    run_id = (folder.read_json(folder.run_info) or {}).get("id") if config.resume else None
    if config.resume:
        ckpt, skipped = load_latest_checkpoint(folder.checkpoints)
        for w in skipped:
            reporter.warn(w)
        if ckpt is None:
            reporter.warn(f"no usable checkpoint in '{folder.checkpoints}'; starting from step 0")
        else:
            model.load_state_dict(ckpt.model_state)
            optimizer.load_state_dict(ckpt.optimizer_state)
            torch.set_rng_state(ckpt.rng_state)
            state = ckpt.state
            folder.truncate_metrics(state.global_step)
            reporter.log(f"resumed from '{ckpt.path.name}' at step {state.global_step}")
    if state.global_step == 0 and folder.metrics.exists():
        folder.metrics.unlink()

    resolved = config.model_copy(update={"out": out, "name": name, "resume": False})
    (folder.config).write_text(resolved.to_toml())
    description = _description(arch, dataset.task, dataset, prepared)
    ledger_id = None
    if ledger is not None:
        ledger_id = ledger.start(name=name, model=config.model.name, data=config.data.source,
                                 out_dir=str(out.resolve()), config=resolved.model_dump(mode="json"),
                                 run_id=run_id)
    run_id = run_id or ledger_id or os.urandom(16).hex()
    folder.write_json(folder.run_info, {"id": run_id, "name": name})

    settings = LoopSettings(
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, schedule=cfg.schedule,
        warmup_steps=cfg.warmup_steps, seed=cfg.seed, eval_every=cfg.eval_every,
        checkpoint_every=cfg.checkpoint_every,
        budget=Budget(cfg.max_time, cfg.max_cost, cfg.price_per_hour),
        target=parse_target(cfg.target) if cfg.target else None, task=dataset.task)

    def checkpoint(st: TrainingState) -> None:
        payload = encode_checkpoint(model.state_dict(), optimizer, st, torch.get_rng_state())
        save_checkpoint(folder.checkpoints, payload, st.global_step)

    transform = None
    if config.data.augment:
        # Provided by the data-preparation capability.
        from shoestring.data.augment import build_augmentation

        transform = build_augmentation(config.data.augment, dataset.input_shape, cfg.seed)

    try:
        with _stop_on_signals(handle_signals) as should_stop:
            outcome = run_loop(model, optimizer, prepared.train, prepared.test, settings, state,
                               clock=clock, reporter=reporter, on_eval=folder.append_metrics,
                               on_checkpoint=checkpoint, should_stop=should_stop,
                               batch_transform=transform)
    except BaseException as exc:
        if ledger is not None and ledger_id is not None:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            ledger.finish(ledger_id, status=status, metrics={}, wall_seconds=state.elapsed_seconds,
                          cost_usd=cost_usd(state.elapsed_seconds, cfg.price_per_hour),
                          error="".join(traceback.format_exception_only(type(exc), exc)).strip())
        raise

    save_model(out, model, description)
    per_epoch = steps_per_epoch(len(prepared.train), cfg.batch_size)
    train_seconds = outcome.state.elapsed_seconds
    summary: dict[str, Any] = {
        "run_id": run_id,
        "name": name,
        "model": config.model.name,
        "data": config.data.source,
        "task": dataset.task.value,
        "status": outcome.status,
        "stop_reason": outcome.reason,
        "epochs_run": round(outcome.state.global_step / per_epoch, 4),
        "steps": outcome.state.global_step,
        "batch_size": cfg.batch_size,
        "train_seconds": round(train_seconds, 4),
        "samples_per_second": round(
            outcome.state.global_step / per_epoch * len(prepared.train) / train_seconds, 1)
        if train_seconds > 0 and math.isfinite(train_seconds) else 0.0,
        "cost_usd": round(cost_usd(train_seconds, cfg.price_per_hour), 6),
        "price_per_hour": cfg.price_per_hour,
        "target": cfg.target,
        "target_reached": outcome.target_reached,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "train_loss": outcome.train_loss,
        **outcome.last_metrics,
    }
    folder.write_json(folder.summary, summary)
    if ledger is not None and ledger_id is not None:
        ledger.finish(ledger_id, status=outcome.status, metrics=summary,
                      wall_seconds=train_seconds, cost_usd=summary["cost_usd"])
    return RunResult(out, run_id, summary)
