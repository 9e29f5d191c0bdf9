"""Pieces of one training session around the loop: signals, micro-batch
choice, checkpoint writing and the summary."""

from __future__ import annotations

import math
import resource
import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from shoestring.ledger.money import usd_to_nano
from shoestring.train.batches import BatchSource
from shoestring.train.checkpoint import TrainingState, encode_checkpoint, save_checkpoint
from shoestring.train.config import TrainConfig
from shoestring.train.distributed import DistInfo, barrier, full_state
from shoestring.train.meter import device_name, device_peak_flops, mfu, transformer_flops_per_token
from shoestring.train.microbatch import accumulation_steps, cpu_micro_batch, cuda_micro_batch
from shoestring.train.precision import Precision
from shoestring.models.run_folder import RunFolder
from shoestring.train.stopping import cost_usd


@contextmanager
def stop_on_signals(enabled: bool) -> Iterator[Callable[[], bool]]:
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


def choose_micro_batch(cfg, model, forward_model, loss_of, source: BatchSource,
                       device: torch.device, precision: Precision, info: DistInfo
                       ) -> tuple[int | None, str | None]:
    """The micro-batch per process: given, searched on CUDA / under --max-memory, or whole."""
    per_rank = cfg.batch_size // info.world
    if cfg.micro_batch_size:
        micro = min(cfg.micro_batch_size, per_rank)
        return micro, _note(micro, per_rank, "set by --micro-batch-size")
    if device.type == "cuda":
        x, y = source.batch(0, 0, 0)

        def try_step(n: int) -> None:
            with precision.autocast():
                loss = loss_of(forward_model, x[:n], y[:n])
            loss.backward()
            model.zero_grad(set_to_none=True)

        micro, why = cuda_micro_batch(per_rank, try_step)
        return micro, _note(micro, per_rank, why)
    if cfg.max_memory:
        x, y = source.batch(0, 0, 0)

        def run_forward(n: int) -> torch.Tensor:
            with precision.autocast():
                return loss_of(forward_model, x[:n], y[:n])

        micro, why = cpu_micro_batch(per_rank, cfg.max_memory, model, cfg.optimizer, run_forward)
        return micro, _note(micro, per_rank, why)
    return None, None


def _note(micro: int, per_rank: int, why: str) -> str:
    return (f"{why}: {accumulation_steps(per_rank, micro)} accumulation step(s) of {micro} "
            f"keep the batch of {per_rank} per process")


class Checkpointer:
    """Every rank gathers the full state (a collective under FSDP); rank 0 writes it.

    A single-process run encodes the checkpoint at once (the bytes are a copy,
    so training may go on changing the weights) and writes it on a worker
    thread: the writes, checksum and fsyncs (four per checkpoint: file,
    manifest, and their directory entries) overlap the next steps instead of
    stalling them. The previous write is awaited before the next checkpoint is
    encoded, so one is in flight at most, and :meth:`wait` (called when the
    loop ends, whatever ends it) awaits the last and raises its error if it
    failed. A kill during a write leaves the previous checkpoint, as a kill
    during a synchronous write does. Multi-process runs write synchronously:
    their barrier promises the file is there.
    """

    def __init__(self, folder: RunFolder, model, optimizer, info: DistInfo,
                 strategy: str) -> None:
        self.folder, self.model, self.optimizer = folder, model, optimizer
        self.info, self.strategy = info, strategy
        self.background = not info.active
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __call__(self, state: TrainingState) -> None:
        model_state, optim_state = full_state(self.model, self.optimizer, self.info,
                                              self.strategy)
        if self.info.is_main:
            self.wait()
            payload = encode_checkpoint(model_state, optim_state, state, torch.get_rng_state())
            if self.background:
                self._thread = threading.Thread(
                    target=self._write, args=(payload, state.global_step),
                    name="shoestring-checkpoint", daemon=True)
                self._thread.start()
            else:
                save_checkpoint(self.folder.checkpoints, payload, state.global_step)
        barrier(self.info)

    def _write(self, payload: bytes, step: int) -> None:
        try:
            save_checkpoint(self.folder.checkpoints, payload, step)
        except BaseException as exc:  # handed to the training thread by wait()
            self._error = exc

    def wait(self) -> None:
        """Until the checkpoint being written is on disk; its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def make_checkpointer(folder: RunFolder, model, optimizer, info: DistInfo,
                      strategy: str) -> Checkpointer:
    """The loop's ``on_checkpoint`` (see :class:`Checkpointer`)."""
    return Checkpointer(folder, model, optimizer, info, strategy)


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # ru_maxrss is in KiB on Linux (getrusage(2)): the process's peak resident memory.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def summarize(config: TrainConfig, problem, outcome, model, device: torch.device,
              precision: Precision, micro: int | None, run_id: str, name: str,
              info: DistInfo) -> dict[str, Any]:
    cfg = config.train
    per_epoch = max(math.ceil(problem.n_train / cfg.batch_size), 1) \
        if problem.tokens_per_example == 0 else None
    steps = outcome.state.global_step
    train_seconds = outcome.state.elapsed_seconds
    # Throughput is this session's own measurement (a resumed run does not mix sessions).
    eps = outcome.examples_seen / outcome.session_seconds if outcome.session_seconds > 0 else 0.0
    summary: dict[str, Any] = {
        "run_id": run_id, "name": name, "model": config.model.name, "data": config.data.source,
        "task": problem.task.value, "status": outcome.status, "stop_reason": outcome.reason,
        "epochs_run": round(steps / per_epoch, 4) if per_epoch else None,
        "steps": steps, "batch_size": cfg.batch_size, "micro_batch_size": micro,
        "train_seconds": round(train_seconds, 4), "samples_per_second": round(eps, 1),
        "cost_usd": round(cost_usd(train_seconds, cfg.price_per_hour), 6),
        "cost_nano_usd": usd_to_nano(cost_usd(train_seconds, cfg.price_per_hour)),
        "price_per_hour": cfg.price_per_hour, "target": cfg.target,
        "target_reached": outcome.target_reached,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device), "device_name": device_name(device), "world_size": info.world,
        "precision": precision.name, "threads": torch.get_num_threads(),
        "peak_memory_bytes": peak_memory_bytes(device),
        "train_loss": outcome.train_loss, **outcome.last_metrics, **problem.baseline,
    }
    if problem.tokens_per_example:
        tps = eps * problem.tokens_per_example
        fpt = transformer_flops_per_token(problem.arch)
        summary.update({
            "tokens_per_second": round(tps, 1), "flops_per_token": fpt,
            "mfu": mfu(fpt, tps, device_peak_flops(device_name(device), precision.name)),
            "tokens": steps * cfg.batch_size * problem.tokens_per_example})
    return summary
