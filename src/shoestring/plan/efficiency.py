"""How much of a device's peak a training step achieves, and how much of the wall time trains.

One efficiency per card (the catalog's ``efficiency``: model FLOPs utilisation
of large, compiled, well-fused training, e.g. 0.40 on H100s from Llama 3's
38–43%) is scaled by what the step is:

- **model size**: a narrow model's matmuls are small and its memory-bound
  work (norms, activations, optimizer) weighs more, so it reaches less of the
  peak: ``h / (h + 400)`` relative to a 4096-wide model, fitted to MosaicML's
  llm-foundry benchmarks (8× A100 80GB, sequences of 2048, no recomputation:
  44.5, 51.6, 56.9, 59.9, 62.1 and 64.2% MFU for 125M, 350M, 760M, 1B, 3B and
  7B models, i.e. 0.69, 0.80, 0.89, 0.93, 0.97 and 1 of the 7B's; the curve
  gives 0.72, 0.79, 0.87, 0.92, 0.95 and 1);
- **recipe** (factors on the rate of *executed* FLOPs, which already count
  recomputation and LoRA's skipped weight gradients), from torchtune's
  measurements on one GPU (README "Optimization flags" table, 2024–25):
  8-bit AdamW 0.95 (−4.7%); eager PyTorch without ``torch.compile`` 0.79
  (compile gave +27%).

LoRA's adapters are not a rate factor either but memory traffic
(:func:`adapter_seconds`): a rank-r adapter's matmuls do ~r FLOPs per byte,
far below any GPU's ridge point (an A100's is ~150), so they, the scaling
and the sum with the frozen projection's output run at the speed of memory.
Per adapted projection and token, PEFT's and torchtune's
``base(x) + scale · B(A(dropout(x)))`` reads the input, writes B's output,
scales it and adds it to the frozen output (``in + 6·out`` values eager;
compiled, the scale and sum fuse: ``in + 4·out``), and its backward reads the
output gradient twice (for B's gradient and A's output gradient), the input
again (A's gradient), and writes and adds the input gradient to the frozen
path's (``5·in + 2·out``); checkpointing reruns the forward, at the
roofline's 80% of the card's bandwidth. (This replaced a factor of 0.84
fitted to torchtune's LoRA rows.)

QLoRA's 4-bit base is not a rate factor but memory traffic
(:func:`dequantize_seconds`): every use of a frozen NF4 weight — the forward,
the recomputed forward under activation checkpointing, and the backward's
input gradient — first dequantises it to bf16, one memory-bound kernel that
reads the codes (0.5 byte per weight plus the block constants) and writes two
bytes (bitsandbytes' ``dequantize_4bit``, QLoRA section 3: "we dequantize the
storage data type to the computation data type to perform the forward and
backward pass"), at the roofline's 80% of the card's bandwidth. No measured
throughput informs it. (It replaced a fitted factor of 0.87, the geometric
mean of torchtune's QLoRA/LoRA ratios of 0.78 and 0.98, whose 0.78 came
from an RTX 4090 row that implies more than 80% of the card's peak.)

Goodput, the share of wall time that trains (Llama 3 reports >90% over 54
days on 16k GPUs, Dubey et al. 2024, section 3.3.4), loses time to evaluations
(``eval_fraction``), checkpoint writes (state bytes / write bandwidth, every
``checkpoint_interval``), and restarts after failures: 419 unexpected
interruptions in 54 days on 16,384 GPUs is 1.97e-5 per GPU-hour, each costing
half a checkpoint interval of redone work plus a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoestring.plan.memory import NF4_BYTES
from shoestring.plan.serving import BANDWIDTH_EFFICIENCY
from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec, layer_linears

SIZE_HALF_WIDTH = 400
REFERENCE_WIDTH = 4096
EIGHT_BIT_OPTIMIZER_RATE = 0.95
EAGER_RATE = 1 / 1.27
# Llama 3 (Dubey et al. 2024, table 5 and section 3.3.4).
FAILURES_PER_GPU_HOUR = 419 / (54 * 24 * 16384)
RESTART_HOURS = 0.1
# Host link for offloaded activations and paged optimizer states: PCIe 4.0 x16
# is 32 GB/s per direction; ~25 GB/s is what pinned copies reach (planner default).
HOST_LINK_GBS = 25.0


def size_factor(spec: ModelSpec) -> float:
    """Fraction of a 4096-wide model's utilisation that a model of this width reaches."""
    width = spec.hidden if spec.family != "mlp" else max(spec.widths)

    def util(h: float) -> float:
        return h / (h + SIZE_HALF_WIDTH)

    return min(1.0, util(width) / util(REFERENCE_WIDTH))


def recipe_factor(setup: StepSetup, *, compiled: bool) -> float:
    """Rate of executed FLOPs relative to a compiled full-training step."""
    f = 1.0
    if setup.optimizer in ("adam8bit", "paged-adam8bit"):
        f *= EIGHT_BIT_OPTIMIZER_RATE
    if not compiled:
        f *= EAGER_RATE
    return f


def adapter_seconds(spec: ModelSpec, setup: StepSetup, bandwidth_gbs: float) -> float:
    """Seconds per step of LoRA's memory-bound adapter kernels (0 without adapters)."""
    if not setup.adapters or spec.family == "mlp":
        return 0.0
    shapes = layer_linears(spec)
    fwd_out = 4 if setup.compiled else 6
    per_token = 0
    for role in setup.lora_targets:
        if role not in shapes:
            continue
        i, o = shapes[role]
        forward = i + fwd_out * o
        per_token += forward * (1 + (setup.checkpointing == "full")) + 5 * i + 2 * o
    elem = 4 if setup.precision == "fp32" else 2
    tokens = setup.micro_batch * setup.seq_len * setup.grad_accum
    moved = spec.layers * per_token * elem * tokens / max(setup.tp, 1)
    return moved / (bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY)


def dequantize_seconds(spec: ModelSpec, setup: StepSetup, bandwidth_gbs: float) -> float:
    """Seconds per step that QLoRA spends dequantising its 4-bit base (0 otherwise).

    Each block matrix is dequantised once per use: forward, recomputation
    (full activation checkpointing) and backward (its input gradient), per
    micro-batch; each time the kernel reads its NF4 bytes and writes bf16.
    """
    if setup.finetune != "qlora" or spec.family == "mlp":
        return 0.0
    weights = spec.layers * sum(i * o for i, o in layer_linears(spec).values()) / max(setup.tp, 1)
    uses = 2 + (setup.checkpointing == "full")
    moved = uses * weights * (NF4_BYTES + 2) * setup.grad_accum
    return moved / (bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY)


@dataclass(frozen=True)
class Goodput:
    """Fractions of training time lost to each cause (wall = train × (1 + sum))."""

    evaluation: float
    checkpoints: float
    failures: float

    @property
    def factor(self) -> float:
        """Share of wall time spent training."""
        return 1 / (1 + self.evaluation + self.checkpoints + self.failures)

    def to_dict(self) -> dict[str, float]:
        return {"evaluation": self.evaluation, "checkpoints": self.checkpoints,
                "failures": self.failures, "goodput": self.factor}


def goodput(*, checkpoint_bytes: float, devices: int, eval_fraction: float,
            checkpoint_interval_h: float, checkpoint_write_gbs: float,
            failures_per_gpu_hour: float = FAILURES_PER_GPU_HOUR) -> Goodput:
    """Time lost to evaluation, checkpoint stalls and failure restarts, per hour of training.

    ``checkpoint_bytes``: what one checkpoint writes (weights and optimizer
    states, or only the adapters); written synchronously, once per interval.
    """
    write_h = checkpoint_bytes / (checkpoint_write_gbs * 1e9) / 3600
    ckpt = write_h / checkpoint_interval_h if checkpoint_interval_h > 0 else 0.0
    fail = failures_per_gpu_hour * devices * (checkpoint_interval_h / 2 + RESTART_HOURS)
    return Goodput(eval_fraction, ckpt, fail)
