"""Exact trace mode: one real step of the real module on fake tensors.

The model is built and run under ``FakeTensorMode``: every tensor has its
true shape, dtype and storage size but no data, so an 8B model "allocates"
nothing. ``MemTracker`` (torch.distributed._tools.mem_tracker) records each
storage by category (parameters, gradients, optimizer states, activations,
temporaries) and the peak of their sum; ``FlopCounterMode`` counts the FLOPs
of every matmul and attention kernel that runs.

The first optimizer step creates the optimizer states; only the second,
steady-state step is measured (training steps after the first look alike).
The trace is a single device: ZeRO/FSDP sharding and tensor parallelism are
applied analytically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shoestring.errors import ShoestringError
from shoestring.plan.build import build_module
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec


@dataclass(frozen=True)
class TraceResult:
    """What one traced step measured (bytes and FLOPs, one device)."""

    peak_bytes: int
    peak_by_category: dict[str, int]
    flops: int
    flops_by_op: dict[str, int]
    params: int
    trainable_params: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "peak_by_category": self.peak_by_category,
                "flops": self.flops, "flops_by_op": self.flops_by_op, "params": self.params,
                "trainable_params": self.trainable_params, "seconds": round(self.seconds, 2),
                "notes": self.notes}


def _peak_tracker() -> Any:
    """A MemTracker that keeps the global peak only.

    MemTracker also updates every module's peak after every op, which costs
    O(ops × modules) and dominated trace time (30 of 50 s on a 1B LoRA step);
    the planner needs the global peak alone. (torch is pinned, so overriding
    this private method is safe; tests exercise it.)
    """
    from copy import deepcopy

    from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker

    class PeakTracker(MemTracker):
        def _update_peak_stats(self, peak_state: Any) -> None:
            for dev, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < snap[_TOTAL_KEY]:
                    self._peak_mem[dev] = snap[_TOTAL_KEY]
                    self._peak_mem_snap[dev] = deepcopy(snap)

    return PeakTracker()


class _NoHook:
    def remove(self) -> None:
        pass


def _track(tracker: Any, *objects: Any, model: nn.Module) -> Any:
    """``tracker.track_external(*objects)``, tolerating frozen parameters.

    MemTracker hooks every parameter's gradient, and ``register_hook`` refuses
    a tensor that needs none (LoRA's frozen base); marking those as already
    hooked skips them. Their memory is still tracked as parameters.
    """
    for p in model.parameters():
        if not p.requires_grad:
            tracker._param_to_grad_hook_handles[p] = (_NoHook(), _NoHook())
    tracker.track_external(*objects)
    return tracker


def _cpu_attention_flops() -> dict[Any, Any]:
    """FlopCounterMode has no formula for the CPU flash-attention kernels; use its CUDA ones.

    The CPU kernel does the same matmuls as the CUDA flash kernel (forward:
    QKᵀ and PV; backward: recomputed scores plus four products, FlashAttention-2,
    Dao 2023, section 3.1.2), so torch's own SDPA formulas apply unchanged.
    """
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def fwd(q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(q, k, v)

    def bwd(grad_out, q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_backward_flop_count(grad_out, q, k, v)

    return {aten._scaled_dot_product_flash_attention_for_cpu: fwd,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: bwd}


def _inputs(spec: ModelSpec, setup: StepSetup) -> tuple[torch.Tensor, torch.Tensor]:
    b = setup.micro_batch
    if spec.family == "mlp":
        return torch.randn(b, spec.widths[0]), torch.randint(0, spec.widths[-1], (b,))
    idx = torch.randint(0, spec.vocab_size, (b, setup.seq_len))
    if spec.family == "encoder":
        from shoestring.plan.build import encoder_classes

        return idx, torch.randint(0, encoder_classes(spec), (b,))
    return idx, torch.randint(0, spec.vocab_size, (b, setup.seq_len))


def _forward(model: nn.Module, spec: ModelSpec, x: torch.Tensor, y: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs, loss); the caller holds the outputs through backward, as training loops do."""
    if spec.family == "mlp":
        out = model(x)
        return out, F.cross_entropy(out, y)  # the engine's classification loss
    return model(x, y)


def _checkpoint_blocks(model: nn.Module) -> None:
    if hasattr(model, "set_activation_checkpointing"):
        model.set_activation_checkpointing(True)
        return
    from functools import partial

    from torch.utils.checkpoint import checkpoint

    from shoestring.plan.build import layer_stack

    for block in layer_stack(model) or []:
        block.forward = partial(checkpoint, block.forward, use_reentrant=False)


def _cast(model: nn.Module, dtype: torch.dtype) -> None:
    """``model.to(dtype)`` for floating parameters and buffers.

    ``Module.to`` swaps tensors in place, which fake tensors (held by weak
    references) refuse; new Parameters are set instead (shared ones once).
    """
    done: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None or not p.is_floating_point():
                continue
            if id(p) not in done:
                done[id(p)] = nn.Parameter(p.detach().to(dtype), requires_grad=p.requires_grad)
            module._parameters[name] = done[id(p)]
        for name, b in list(module._buffers.items()):
            if b is not None and b.is_floating_point():
                module._buffers[name] = b.to(dtype)


def _prepare(spec: ModelSpec, setup: StepSetup) -> tuple[nn.Module, list[nn.Parameter]]:
    model = build_module(spec, train=setup.mode == "train")
    if setup.adapters:
        from shoestring.plan.lora import apply_lora

        # The frozen base is kept in bf16 (4-bit for QLoRA) unless training in fp32.
        if setup.precision != "fp32":
            _cast(model, torch.bfloat16)
        apply_lora(model, spec, setup.lora_targets, setup.lora_rank, setup.lora_alpha,
                   quantize=setup.finetune == "qlora")
    elif setup.precision == "bf16" or (setup.mode == "serve" and setup.precision != "fp32"):
        _cast(model, torch.bfloat16)  # serving keeps bf16 weights (plan.serving.weight_bytes)
    if setup.checkpointing == "full" and setup.mode == "train":
        _checkpoint_blocks(model)
    elif setup.checkpointing == "selective":
        raise ShoestringError("trace mode does not model selective recomputation",
                              hint="Shoestring's attention is fused (no s² activations "
                              "to recompute); use checkpointing none or full")
    trainable = [p for p in model.parameters() if p.requires_grad]
    return model, trainable


def _optimizer(params: list[nn.Parameter], setup: StepSetup) -> torch.optim.Optimizer:
    foreach = setup.kernels == "cuda"  # torch's default on CUDA tensors, not on CPU ones
    if setup.optimizer == "sgd":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9, foreach=foreach)
    if setup.optimizer == "adam8bit":
        raise ShoestringError("trace mode cannot run an 8-bit optimizer",
                              hint="trace with --optimizer adamw; 8-bit Adam is analytic only")
    return torch.optim.AdamW(params, lr=1e-3, foreach=foreach)


def trace_step(spec: ModelSpec, setup: StepSetup) -> TraceResult:
    """Run one step of ``spec``'s module on fake tensors; measure peak memory and FLOPs."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    t0 = time.perf_counter()
    notes: list[str] = []
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=setup.precision != "fp32")
    with FakeTensorMode(allow_non_fake_inputs=False):
        model, trainable = _prepare(spec, setup)
        x, y = _inputs(spec, setup)
        params = sum(p.numel() for p in model.parameters())
        n_trainable = sum(p.numel() for p in trainable)
        if setup.mode == "serve":
            model.eval()

            def prefill() -> None:
                with torch.no_grad(), autocast:
                    # Prefill needs the next-token logits of the last position only.
                    model(x, last_only=True) if spec.family == "decoder" else model(x)

            with FlopCounterMode(display=False, custom_mapping=_cpu_attention_flops()) \
                    as counter:
                prefill()
            tracker = _track(_peak_tracker(), model, x, model=model)
            with tracker:
                prefill()
            notes.append("serve: one prefill forward pass; the KV cache is added analytically")
            counter_scale = 1
        else:
            model.train()
            opt = _optimizer(trainable, setup)
            micro = min(setup.grad_accum, 2)  # the second micro-batch sees accumulated grads

            def step(tracker: Any = None) -> None:
                for _ in range(micro):
                    if tracker is not None:
                        tracker.reset_mod_stats()  # per-module stats allow one pass per module
                    with autocast:
                        out, loss = _forward(model, spec, x, y)
                    loss.backward()
                    del out, loss
                opt.step()
                opt.zero_grad(set_to_none=True)

            # FLOPs on the first step (which also creates the optimizer states),
            # memory on the second: FlopCounterMode's module hooks keep
            # recomputed activations alive under checkpointing, so the two
            # counters must not run together.
            with FlopCounterMode(display=False, custom_mapping=_cpu_attention_flops()) \
                    as counter:
                step()
            tracker = _track(_peak_tracker(), model, opt, x, y, model=model)
            with tracker:
                step(tracker)
            counter_scale = setup.grad_accum / micro
            if micro != setup.grad_accum:
                notes.append(f"traced {micro} of {setup.grad_accum} micro-batches")
        snap = tracker.get_tracker_snapshot("peak")
    device_snap = next(iter(snap.values()), {})
    categories = {str(getattr(k, "value", k)): int(v) for k, v in device_snap.items()}
    total = categories.pop("Total", sum(categories.values()))
    scale = counter_scale if setup.mode == "train" else 1
    by_op = {str(op).removeprefix("aten."): int(n * scale)
             for op, n in counter.get_flop_counts().get("Global", {}).items()}
    flops = int(counter.get_total_flops() * scale)
    return TraceResult(peak_bytes=int(total), peak_by_category=categories, flops=int(flops),
                       flops_by_op=by_op, params=params, trainable_params=n_trainable,
                       seconds=time.perf_counter() - t0, notes=notes)
