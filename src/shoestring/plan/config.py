"""The typed configuration of ``shoestring plan``: one model, one workload, the search space.

:func:`resolve_plan_config` validates everything at once and reports every
problem together; the CLI flags map one to one onto these fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from shoestring.config import StrictConfig, validate_config
from shoestring.plan.setup import DEFAULT_LORA_ALPHA, DEFAULT_LORA_RANK, DEFAULT_LORA_TARGETS


# Release 0.1's --checkpointing values, as activation_checkpointing.
CHECKPOINTING_0_1 = {"auto": None, "none": False, "full": True}


class PlanConfig(StrictConfig):
    """Everything a plan needs. Unset workload fields get documented defaults."""

    model: str = Field(description="preset name, HF config.json, or Shoestring run folder")
    # --- workload
    tokens: float | None = Field(None, gt=0, description="training tokens (default: 20 per "
                                 "parameter for pre-training, Chinchilla; 10M for fine-tuning)")
    samples: int | None = Field(None, gt=0, description="training sequences (or MLP samples)")
    epochs: float = Field(1.0, gt=0, description="passes over --samples")
    seq_len: int | None = Field(None, gt=0, description="tokens per sequence (default: the "
                                "model's context, at most 2048; encoders 512)")
    batch_size: int | None = Field(None, gt=0, description="global batch in sequences per "
                                   "optimizer step (default: ~0.5M tokens pre-training, 32 "
                                   "fine-tuning, 128 for an MLP)")
    micro_batch_size: int | None = Field(None, gt=0, description="fix the per-device "
                                         "micro-batch")
    nproc: int | None = Field(None, gt=0, description="fix the device count (processes)")
    finetune: Literal["full", "lora", "qlora"] | None = Field(
        None, description="fine-tune instead of pre-train")
    lora_rank: int = Field(DEFAULT_LORA_RANK, gt=0, description="LoRA rank r")
    lora_alpha: float = Field(DEFAULT_LORA_ALPHA, gt=0, description="LoRA scale α (α/r "
                              "multiplies the update; no effect on memory or time)")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' "
                                "input; above 0 each adapted projection keeps its own "
                                "dropped input and mask")
    lora_targets: tuple[str, ...] = Field(DEFAULT_LORA_TARGETS,
                                          description="q,k,v,o,gate,up,down (or fc,proj)")
    serve: bool = Field(False, description="plan inference serving instead of training")
    requests: int = Field(10000, gt=0, description="requests to serve")
    context: int = Field(1024, gt=0, description="prompt tokens per request")
    output_tokens: int = Field(256, ge=0, description="generated tokens per request")
    serve_batch: int = Field(8, gt=0, description="requests decoded together")
    # --- search space
    precision: Literal["auto", "fp32", "bf16", "bf16-true"] = Field(
        "auto", description="bf16: fp32 weights, bf16 autocast (as 'shoestring train' "
        "--precision bf16); bf16-true: pure bf16 weights, gradients and optimizer states; "
        "auto: bf16-true for fine-tuning, bf16 for pre-training, searched on CPUs")
    optimizer: Literal["adamw", "sgd", "adam8bit", "paged-adam8bit"] = Field(
        "adamw", description="adam8bit: bitsandbytes 8-bit AdamW; paged-adam8bit: its "
        "states in CUDA unified memory, paged to CPU RAM when the GPU is full")
    optimizer_in_backward: bool | None = Field(
        None, description="step each parameter as its gradient is ready (no gradient "
        "accumulation); unset: searched for full training")
    loss_chunks: int | None = Field(
        None, ge=1, description="cross-entropy in this many chunks, never materialising "
        "the full logits (1: plain); unset: 8 for decoders")
    offload_activations: bool | None = Field(
        None, description="keep saved activations in CPU RAM; unset: searched with "
        "activation checkpointing")
    compile: bool = Field(False, description="torch.compile the step (train --compile): "
                          "~1.27× the eager rate in torchtune's measurements")
    fused_optimizer: bool = Field(False, description="AdamW(fused=True): no optimizer "
                                  "temporaries (torch's CUDA default, foreach, copies the "
                                  "second moments once)")
    efficiency: float | None = Field(
        None, gt=0, le=1, description="your trainer's MFU on this model and recipe (model "
        "FLOPs, 6N + 12LHQT per token, over the dense peak), e.g. from its logs or its "
        "published figure; replaces the catalog efficiency and the size and recipe factors "
        "(unset: a PyTorch trainer's, from the catalog)")
    inter_node_gbs: float = Field(6.25, gt=0, description="GB/s per device between machines "
                                  "(6.25: 400 Gb/s per 8-GPU node; 25: 200 Gb/s per GPU, "
                                  "e.g. DGX A100 or 1,600 Gb/s RoCE nodes)")
    activation_checkpointing: bool | None = Field(
        None, description="recompute block activations in backward (default: whichever is "
        "cheaper)")
    zero: Literal["auto", "0", "1", "2", "3"] = Field("auto", description="ZeRO / FSDP sharding "
                                                      "stage")
    hardware: tuple[str, ...] = Field((), description="only these catalog devices")
    catalog: tuple[Path, ...] = Field((), description="extra catalog TOML files")
    spot: bool = Field(True, description="also price spot instances")
    setup_minutes: float = Field(5.0, ge=0, description="billed minutes to start the machines "
                                 "and load the model, once per job")
    checkpoint_interval_min: float = Field(30.0, gt=0, description="minutes between "
                                           "checkpoints (spot preemptions, failures, stalls)")
    checkpoint_write_gbs: float = Field(1.0, gt=0, description="GB/s a checkpoint is "
                                        "written at (stalls training while it writes)")
    eval_fraction: float = Field(0.02, ge=0, le=1, description="evaluation time as a "
                                 "fraction of training time")
    preemptions_per_hour: float = Field(0.05, ge=0)
    max_price_per_hour: float | None = Field(None, gt=0, description="USD: leave out options "
                                             "whose machines cost more per hour, all together")
    largest: Literal["micro-batch", "context"] | None = Field(
        None, description="also report the largest micro-batch (or context, at the "
        "micro-batch given, else 1) that fits on one of each device")
    # --- ranking
    budget: float | None = Field(None, gt=0, description="USD: show the fastest option within")
    deadline_hours: float | None = Field(None, gt=0, description="show the cheapest within")
    max_hours: float = Field(24 * 30, gt=0, description="drop options slower than this")
    tie_tolerance: float = Field(0.02, ge=0, le=0.5, description="options within this fraction "
                                 "of the cheapest count as tied on cost; the faster ranks first")
    top: int = Field(10, gt=0, description="options to show")
    trace: bool = Field(False, description="also run the exact fake-tensor trace")

    @model_validator(mode="before")
    @classmethod
    def _release_0_1_names(cls, values: Any) -> Any:
        """Release 0.1's names for the fields ``shoestring train`` names otherwise."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        for old, new in (("micro_batch", "micro_batch_size"), ("gpus", "nproc")):
            if old in values:
                values.setdefault(new, values.pop(old))
        if "checkpointing" in values:
            values.setdefault("activation_checkpointing",
                              CHECKPOINTING_0_1[values.pop("checkpointing")])
        if values.get("precision") == "bf16-mixed":
            values["precision"] = "bf16"
        return values

    @property
    def search_precision(self) -> str:
        """The precision in the planner's own terms: its ``bf16-mixed`` is train's ``bf16``;
        ``bf16-true`` (pure bf16) and ``auto`` are resolved by the search."""
        return "bf16-mixed" if self.precision == "bf16" else self.precision

    @property
    def search_checkpointing(self) -> str:
        return {None: "auto", True: "full", False: "none"}[self.activation_checkpointing]

    @model_validator(mode="after")
    def _check(self) -> PlanConfig:
        problems = []
        if self.serve and self.finetune:
            problems.append("--serve and --finetune exclude each other")
        if self.tokens is not None and self.samples is not None:
            problems.append("give --tokens or --samples, not both")
        if self.micro_batch_size and self.batch_size and \
                self.micro_batch_size > self.batch_size:
            problems.append(f"micro_batch_size {self.micro_batch_size} exceeds batch_size "
                            f"{self.batch_size}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def resolve_plan_config(values: dict[str, Any]) -> PlanConfig:
    """Validate ``values`` into a :class:`PlanConfig`, reporting every problem together.

    >>> resolve_plan_config({"model": "gpt2-124m", "tokens": 1e9}).tokens
    1000000000.0
    """
    clean = {k: v for k, v in values.items() if v is not None}
    return validate_config(PlanConfig, clean, hint="see 'shoestring plan --help'")
