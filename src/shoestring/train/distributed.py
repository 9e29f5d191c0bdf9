"""Data parallelism through PyTorch's own engine: torchrun, DDP and FSDP2.

``shoestring train --nproc N`` re-launches itself through
``torch.distributed.run`` (torchrun); each worker finds ``RANK``/``WORLD_SIZE``
in its environment, joins the process group (gloo on CPU, NCCL on GPU) and
wraps the model in DDP, or shards it with FSDP2's ``fully_shard`` on GPUs.
Only rank 0 writes files and the ledger. Checkpoints hold full (unsharded)
state, so they do not depend on the number of processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn

from shoestring.errors import ShoestringError

# Flags of `shoestring train` that only the launcher reads.
LAUNCH_FLAGS = {"--nproc": 1, "--nnodes": 1, "--rdzv-endpoint": 1, "--max-restarts": 1}


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    restart: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def info_from_env(environ: Mapping[str, str]) -> DistInfo:
    """What torchrun told this worker (defaults: a single process)."""
    return DistInfo(rank=int(environ.get("RANK", 0)), world=int(environ.get("WORLD_SIZE", 1)),
                    local_rank=int(environ.get("LOCAL_RANK", 0)),
                    restart=int(environ.get("TORCHELASTIC_RESTART_COUNT", 0)))


def check_strategy(strategy: str, device: str, cuda_available: bool | None = None) -> None:
    """Refuse a strategy the machine cannot run, before any worker starts."""
    if strategy != "fsdp":
        return
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if device == "cpu" or not cuda_available:
        where = "--device cpu" if device == "cpu" else "this machine has no CUDA device"
        raise ShoestringError(f"--strategy fsdp shards the model over GPUs, and {where}",
                              hint="use --strategy ddp on CPUs (every process keeps a full "
                              "copy of the model), or run on a machine with GPUs")


def init_process_group(info: DistInfo, device: torch.device) -> None:
    if info.active and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def destroy_process_group(info: DistInfo) -> None:
    if info.active and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo, strategy: str, device: torch.device) -> nn.Module:
    """DDP (replicated) or FSDP2 (sharded, GPU only) around ``model``."""
    if not info.active:
        return model
    if strategy == "fsdp":
        if device.type != "cuda":
            raise ShoestringError("--strategy fsdp needs GPUs", hint="use --strategy ddp on CPU")
        from torch.distributed.fsdp import fully_shard

        # Shard each transformer block, then the root (the FSDP2 recipe of the
        # PyTorch FSDP2 tutorial), so only one block is gathered at a time.
        for block in getattr(model, "blocks", getattr(model, "layers", [])):
            fully_shard(block)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def any_rank(flags: list[bool], info: DistInfo) -> list[bool]:
    """Each flag true on every rank if it is true on any (stop decisions must agree).

    One all-reduce for all flags, so a step pays one collective at most.
    """
    if not info.active:
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def mean_over_ranks(value: float, info: DistInfo) -> float:
    if not info.active:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / info.world


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer, info: DistInfo, strategy: str):
    """Unsharded model and optimizer state dicts (every rank must call this)."""
    if info.active and strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        return get_state_dict(model, optimizer,
                              options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    inner = model.module if hasattr(model, "module") else model
    return inner.state_dict(), optimizer.state_dict()


def torchrun_argv(train_argv: Sequence[str], nproc: int, nnodes: str, rdzv_endpoint: str | None,
                  max_restarts: int) -> list[str]:
    """The torchrun command that runs ``shoestring train`` (minus launch flags) N times."""
    rest: list[str] = []
    skip = 0
    for arg in train_argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCH_FLAGS:
            skip = 0 if "=" in arg else LAUNCH_FLAGS[name]
            continue
        rest.append(arg)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           f"--nnodes={nnodes}", f"--max-restarts={max_restarts}"]
    if rdzv_endpoint:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"]
    else:
        cmd += ["--standalone"]
    return cmd + ["-m", "shoestring", "train", *rest]


def launch(cmd: list[str], environ: Mapping[str, str], nproc: int) -> int:
    """Run torchrun and return its exit code (the CLI's edge)."""
    env = dict(environ)
    # Share the cores among workers unless told otherwise: N workers each
    # spinning one OpenMP thread per core would fight for the same cores.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, nproc))))
    return subprocess.call(cmd, env=env)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict,
                         info: DistInfo, strategy: str) -> None:
    """Load a full (unsharded) optimizer state saved by any world size."""
    if info.active and strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(model, optimizer, model_state_dict={}, optim_state_dict=state,
                       options=StateDictOptions(full_state_dict=True, strict=False))
        return
    optimizer.load_state_dict(state)
