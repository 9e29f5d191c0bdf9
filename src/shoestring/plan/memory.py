"""Peak memory of one step on one device, summed honestly.

Accelerate's ``estimate-memory`` reports the largest single component;
DeepSpeed's estimators stop at model states. Here the peak is the sum of what
is alive at the worst moment of the step:

    static  = weights (+ buffers) + optimizer states
    peak    = static + max(
                loss backward:  activations + loss tensors + autocast weight copies,
                block backward: activations + one block's backward gradients,
                optimizer step: gradients + optimizer temporaries)

with gradients also alive during the forward when micro-batches accumulate.
ZeRO (Rajbhandari et al. 2020, arXiv:1910.02054, figure 1) divides optimizer
states (stage 1), gradients (2) and weights (3; FSDP full-shard) by the
data-parallel degree; tensor parallelism (Shoeybi et al. 2019) divides the
block weights and the activations between its column- and row-parallel matmuls.
A runtime overhead (CUDA context, allocator fragmentation) is added last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from shoestring.plan.activations import (
    FP32,
    backward_transient,
    block_terms,
    chunk_saved_bytes,
    dtype_bytes,
    final_terms,
    loss_terms,
)
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec, count_params, layer_linears

GIB = 1024 ** 3
NF4_BLOCK = 64          # weights per absmax (QLoRA, Dettmers et al. 2023, section 3)
NF4_SECOND_BLOCK = 256  # blocks per second-level constant (double quantisation)

# Optimizer state bytes per trained parameter: AdamW keeps two moments in the
# parameters' dtype (Loshchilov & Hutter 2019; torch.optim.AdamW allocates
# them with zeros_like(param)), SGD one momentum buffer; 8-bit Adam two uint8
# moments with one fp32 absmax per 2048 values (Dettmers et al. 2022,
# arXiv:2110.02861), paged or not.
EIGHT_BIT_ADAM_BYTES = 2 * (1 + FP32 / 2048)


def optimizer_bytes_per_param(setup: StepSetup) -> float:
    """State bytes per trained parameter of ``setup.optimizer``."""
    if setup.optimizer in ("adam8bit", "paged-adam8bit"):
        return EIGHT_BIT_ADAM_BYTES
    return (2 if setup.optimizer == "adamw" else 1) * setup.param_bytes
# QLoRA storage per frozen parameter: a 4-bit code plus double-quantised
# constants, 0.127 bits per parameter (Dettmers et al. 2023, section 3).
NF4_BYTES = 0.5 + 1 / NF4_BLOCK + FP32 / (NF4_BLOCK * NF4_SECOND_BLOCK)
# Fragmentation of PyTorch's caching allocator: reserved exceeds allocated by
# a few percent in steady training; 5% is the planner's documented default.
FRAGMENTATION = 0.05


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per device at the step's peak; ``total`` includes the runtime overhead."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int
    phase: str
    detail: dict[str, int] = field(default_factory=dict)
    paged: int = 0       # paged optimizer states: CUDA unified memory, not the device peak
    offloaded: int = 0   # activations held in CPU RAM (offload_activations)

    @property
    def peak_tensors(self) -> int:
        """What PyTorch's allocator (or the trace) sees: total less runtime overhead."""
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def total(self) -> int:
        return self.peak_tensors + self.overhead

    def to_dict(self) -> dict:
        d = asdict(self)
        d["peak_tensors"] = self.peak_tensors
        d["total"] = self.total
        return d


@dataclass(frozen=True)
class _Params:
    """Parameter bytes by role, before sharding."""

    weights: float       # stored weights + buffers
    trained: int         # trained parameter count
    max_tensor: int      # largest trained tensor (per-tensor optimizer temporaries)
    cast_copies: float   # bf16 copies autocast makes of trained matmul weights
    block_weights: float


def _param_bytes(spec: ModelSpec, setup: StepSetup) -> _Params:
    counts = count_params(spec)
    total = counts.total
    shapes = layer_linears(spec) if spec.family != "mlp" else {}
    mats = sum(i * o for i, o in shapes.values())
    biases = sum(o for _, o in shapes.values()) if spec.bias else 0
    buffers = 0
    if spec.family == "decoder" and spec.pos == "rope":
        buffers = 2 * spec.max_seq * spec.head_dim  # cos and sin tables
    if setup.adapters:
        r = setup.lora_rank
        adapter = spec.layers * sum(r * (shapes[t][0] + shapes[t][1])
                                    for t in setup.lora_targets if t in shapes)
        frozen_bytes = FP32 if setup.precision == "fp32" else 2
        if setup.finetune == "qlora":
            quantised = spec.layers * mats
            weights = quantised * NF4_BYTES + (total - quantised) * frozen_bytes
        else:
            weights = total * frozen_bytes
        weights += adapter * setup.param_bytes + buffers * frozen_bytes
        biggest = max((r * max(i, o) for i, o in shapes.values()), default=0)
        cast = 2 * adapter if setup.mixed else 0
        return _Params(weights, adapter, biggest, cast, spec.layers * mats * frozen_bytes)
    wbytes = 2 if setup.precision == "bf16" else FP32
    weights = (total + buffers) * wbytes
    if spec.family == "mlp":
        biggest = max(a * b for a, b in zip(spec.widths, spec.widths[1:]))
        matmul_params = counts.total
    else:
        biggest = max(max(i * o for i, o in shapes.values()), spec.vocab_size * spec.hidden)
        matmul_params = spec.layers * (mats + biases) + counts.head_matmul + _head_extras(spec)
    cast = 2 * matmul_params if setup.mixed else 0
    return _Params(weights, total, biggest, cast, spec.layers * (mats + biases) * wbytes)


def _head_extras(spec: ModelSpec) -> int:
    """Pooler and classifier weights + biases of an encoder (matmuls autocast copies)."""
    if spec.family != "encoder":
        return 0
    from shoestring.plan.build import encoder_classes

    c = encoder_classes(spec)
    return (spec.hidden * spec.hidden + spec.hidden if spec.pooler else 0) \
        + spec.hidden * c + c


def _optimizer_temp(setup: StepSetup, p: _Params, shard: float) -> float:
    """Temporaries of ``optimizer.step()``.

    torch's foreach AdamW (the CUDA default) takes ``sqrt`` of every second
    moment at once: one fp32 copy of all trained parameters. The per-tensor
    loop (the CPU default) holds ``sqrt(v)`` and ``sqrt(v)/c`` of one tensor.
    SGD updates in place.
    """
    if setup.optimizer == "adam8bit":
        # torchao's AdamW8bit dequantises one tensor's two moments to fp32 for
        # its update (torchao/optim: single_param_adam); bitsandbytes' paged
        # kernel updates in place.
        return 2 * FP32 * p.max_tensor
    if setup.optimizer != "adamw" or setup.fused_optimizer:
        return 0.0  # SGD, bitsandbytes and the fused AdamW kernel update in place
    if setup.kernels == "cuda" and not setup.optimizer_in_backward:
        return setup.param_bytes * p.trained * shard
    return 2 * setup.param_bytes * p.max_tensor


def _tokens(spec: ModelSpec, setup: StepSetup) -> int:
    return setup.micro_batch * (1 if spec.family == "mlp" else setup.seq_len)


def _sharding(setup: StepSetup) -> tuple[float, float, float, float]:
    """(weights, gradients, optimizer, tensor-parallel) fractions kept per device."""
    dp, z = max(setup.dp, 1), setup.zero_stage
    return (1 / dp if z >= 3 else 1.0, 1 / dp if z >= 2 else 1.0, 1 / dp if z >= 1 else 1.0,
            1 / max(setup.tp, 1))


# Offloaded activations: the block being computed (or rebuilt) and the one in
# flight to or from the host stay on the device (torchtune's OffloadActivations
# prefetches one layer ahead on a side stream).
OFFLOAD_BLOCKS_ON_DEVICE = 2


def _transformer_phases(spec: ModelSpec, setup: StepSetup, p: _Params, grads: float
                        ) -> tuple[dict[str, dict[str, float]], float]:
    """What is alive, besides weights and optimizer states, at each candidate peak.

    Also returns the bytes of activations offloaded to CPU RAM.
    """
    *_, tp = _sharding(setup)
    tokens = _tokens(spec, setup)
    _, r = dtype_bytes(setup)
    blk = block_terms(spec, setup)
    # Korthikanti et al. eq. 5: with TP, what lies between the column- and
    # row-parallel matmuls is split; norms and residuals are replicated.
    replicated = sum(v for k, v in blk.items() if "residual" in k or "normalised" in k)
    per_layer = tokens * (replicated + (sum(blk.values()) - replicated) * tp)
    common = {"inputs (token ids, targets)": tokens * 2 * 8}
    if setup.grad_accum > 1:
        common["gradients"] = grads  # accumulated over the earlier micro-batches
    final = {"final norm and head input": tokens * sum(final_terms(spec, setup).values())}
    head_cast = _head_cast(spec, setup) * tp
    on_device = 1.0
    if setup.offload_activations:
        on_device = min(spec.layers, OFFLOAD_BLOCKS_ON_DEVICE) / max(spec.layers, 1)
    if setup.checkpointing == "full":
        # Only each block's input is kept; one block is rebuilt in its backward,
        # with its own autocast weight copies (the head's copy stays).
        kept = tokens * spec.layers * spec.hidden * r
        saved = {"block inputs (checkpoints)": kept * on_device}
        rebuilt = {"one recomputed block": per_layer,
                   "bf16 weight copies (autocast)":
                       head_cast + (p.cast_copies * tp - head_cast) / max(spec.layers, 1)}
        loss_cast = {"bf16 weight copies (autocast)": head_cast}
    else:
        kept = spec.layers * per_layer
        saved = {"saved by blocks": kept * on_device}
        rebuilt = {"bf16 weight copies (autocast)": p.cast_copies * tp}
        loss_cast = rebuilt
    offloaded = kept * (1 - on_device)
    if setup.offload_activations:
        saved = {k + " (on device; the rest offloaded)": v for k, v in saved.items()}
    fwd_terms, bwd_terms, held_terms = loss_terms(spec, setup)
    loss = {k: tokens * v * tp for k, v in bwd_terms.items()}
    held = {k: tokens * v * tp for k, v in held_terms.items()}
    stepped = {}
    if setup.optimizer_in_backward:
        # Each gradient is applied and freed as soon as it is complete.
        stepped = {"one gradient (stepped in backward)": grads,
                   "optimizer temporaries (one tensor)": _optimizer_temp(setup, p, tp)}
    phases = {
        "loss backward": {**common, **final, **saved, **loss_cast, **loss, **stepped},
        "block backward": {**common, **saved, **rebuilt, **held, **stepped,
                           "block backward gradients":
                               tokens * backward_transient(spec, setup, blk) * tp},
    }
    if not setup.optimizer_in_backward:
        # The backward of the first block: the gradients of every other
        # parameter already exist, the other blocks' activations are freed.
        first = {"one recomputed block": per_layer} if setup.checkpointing == "full" else \
            {"first block's saved activations": per_layer}
        phases["first block backward"] = {
            **common, **held, **first, **rebuilt_one(rebuilt, setup, spec),
            "gradients": grads * (1 - 1 / max(spec.layers, 1)),
            "block backward gradients": tokens * backward_transient(spec, setup, blk) * tp}
    if spec.family == "decoder" and not setup.adapters and setup.chunked_loss \
            and setup.loss_keeps_logits:
        # The trained head runs once per chunk, so its weight gets one gradient
        # per chunk. Autograd sums them in the input buffer of the weight's
        # AccumulateGrad node before it runs (torch/csrc/autograd/input_buffer.cpp):
        # from the second chunk on, the sum so far, the chunk's new gradient
        # and (out of place) their sum coexist — three head-sized tensors,
        # measured with MemTracker (the same pattern as a tied embedding's two
        # gradients below) — while the chunks not yet differentiated keep
        # their saved logits. The step in backward fires only after the sum.
        vh = count_params(spec).head_matmul * setup.param_bytes * tp
        remaining = max(setup.loss_chunks - 2, 0) / setup.loss_chunks
        phases["chunked head backward"] = {
            **common, **final, **saved, **loss_cast,
            "saved logits of the chunks not yet differentiated":
                tokens * chunk_saved_bytes(spec, setup) * remaining * tp,
            "head gradient: the sum so far, one chunk's, and their sum": 3 * vh}
    if spec.family == "decoder":
        # Autocast caches every weight's bf16 copy until the forward ends, and
        # the loss's forward tensors are all alive there: with checkpointed
        # blocks, or a loss that keeps every chunk's logits, this can be the peak.
        phases["forward end"] = {**common, **final, **saved,
                                 "bf16 weight copies (autocast)": p.cast_copies * tp,
                                 **{k: tokens * v * tp for k, v in fwd_terms.items()}}
    if spec.family == "decoder" and not setup.adapters and spec.tie_embeddings:
        # A tied embedding gets a second gradient from its lookup at the very
        # end of backward; it and the sum with the head's gradient coexist with
        # all other gradients (measured in trace mode).
        vh = spec.vocab_size * spec.hidden * setup.param_bytes * tp
        phases["embedding backward"] = {**common, **held, "gradients": grads,
                                        "embedding gradient and sum": 2 * vh}
    return phases, offloaded


def rebuilt_one(rebuilt: dict[str, float], setup: StepSetup, spec: ModelSpec
                ) -> dict[str, float]:
    """The autocast weight copies alive in one block's backward."""
    copies = rebuilt.get("bf16 weight copies (autocast)", 0.0)
    if setup.checkpointing != "full":
        copies /= max(spec.layers, 1)   # only this block's copies are still saved
    return {"bf16 weight copies (autocast)": copies} if copies else {}


def _mlp_phases(spec: ModelSpec, setup: StepSetup, p: _Params, grads: float
                ) -> dict[str, dict[str, float]]:
    """An MLP's loss backward, and the backward of its first layer (usually the peak)."""
    e, _ = dtype_bytes(setup)
    b, w = setup.micro_batch, spec.widths
    inputs = {"inputs": b * (w[0] * FP32 + 8)}
    if setup.grad_accum > 1:
        inputs["gradients"] = grads
    if setup.mixed:
        # Autocast saves a bf16 copy of the input for the first layer's weight
        # gradient, and of every weight.
        inputs["bf16 input copy (autocast)"] = b * w[0] * 2
        inputs["bf16 weight copies (autocast)"] = p.cast_copies
    hidden = w[1:-1]
    held = b * w[-1] * e
    worst = max((b * (sum(hidden[:i + 1]) + 2 * hidden[i]) * e for i in range(len(hidden))),
                default=0)
    return {
        "loss backward": {**inputs, "hidden activations": b * sum(hidden) * e,
                          "logits, log-softmax and their gradients": 4 * held},
        "block backward": {**inputs, "layer backward (activations + 2 gradients)": worst,
                           "logits (held by the caller)": held},
    }


def estimate_memory(spec: ModelSpec, setup: StepSetup, *, context_gib: float = 0.0
                    ) -> MemoryBreakdown:
    """Peak bytes per device of one step of ``setup``.

    ``context_gib`` is the device's fixed runtime overhead (CUDA context and
    library workspaces, from the hardware catalog); with it, 5% fragmentation
    is added too.

    >>> from shoestring.plan.presets import load_preset
    >>> m = estimate_memory(load_preset("gpt2-124m"), StepSetup(micro_batch=8, seq_len=1024))
    >>> m.phase
    'loss backward'
    """
    if setup.mode == "serve":
        from shoestring.plan.serving import serving_memory

        return serving_memory(spec, setup, context_gib=context_gib)
    p = _param_bytes(spec, setup)
    w_shard, g_shard, o_shard, tp = _sharding(setup)
    weights = p.weights * tp * w_shard
    if w_shard < 1:
        # FSDP/ZeRO-3 gathers one block's full weights (and prefetches the next),
        # in bf16 under mixed precision (FSDP MixedPrecision(param_dtype=bf16)),
        # which then replace autocast's copies.
        gathered = p.block_weights / max(spec.layers, 1) * tp
        weights += 2 * (gathered / 2 if setup.mixed else gathered)
        p = replace(p, cast_copies=0.0)
    opt_bytes = optimizer_bytes_per_param(setup) * p.trained * tp * o_shard
    paged = 0.0
    if setup.optimizer == "paged-adam8bit":
        # Unified memory: evicted to CPU RAM under pressure, so not part of the peak.
        paged, opt_bytes = opt_bytes, 0.0
    grads = setup.param_bytes * p.trained * tp * g_shard
    if setup.optimizer_in_backward:
        grads = setup.param_bytes * p.max_tensor * tp   # only the gradient being applied
    offloaded = 0.0
    if spec.family == "mlp":
        phases = _mlp_phases(spec, setup, p, grads)
    else:
        phases, offloaded = _transformer_phases(spec, setup, p, grads)
    inputs = {k: v for k, v in phases["loss backward"].items() if k.startswith("inputs")}
    if not setup.optimizer_in_backward:
        phases["optimizer step"] = {**inputs, "gradients": grads,
                                    "optimizer temporaries":
                                        _optimizer_temp(setup, p, tp * g_shard)}
    totals = {name: sum(parts.values()) for name, parts in phases.items()}
    phase = max(totals, key=totals.get)
    parts = phases[phase]
    at_grads = parts.get("gradients", 0.0) + parts.get("one gradient (stepped in backward)", 0.0)
    peak_tensors = weights + opt_bytes + totals[phase]
    overhead = context_gib * GIB + FRAGMENTATION * peak_tensors if context_gib else 0.0
    return MemoryBreakdown(weights=int(weights), gradients=int(at_grads),
                           optimizer=int(opt_bytes), activations=int(totals[phase] - at_grads),
                           overhead=int(overhead), phase=phase,
                           detail={k: int(v) for k, v in parts.items() if v},
                           paged=int(paged), offloaded=int(offloaded))


def _head_cast(spec: ModelSpec, setup: StepSetup) -> float:
    if not setup.mixed or setup.adapters:
        return 0.0
    return 2 * (count_params(spec).head_matmul + _head_extras(spec))
