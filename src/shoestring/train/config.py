"""The typed configuration of ``shoestring train``.

One :class:`TrainConfig` with three sections mirrors the TOML file
(``[model]``, ``[data]``, ``[train]``); CLI flags override file values field by
field. :func:`resolve_config` validates everything at once and reports every
problem together. The resolved config is saved as ``config.toml`` in the run
folder.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

import tomli_w
from pydantic import Field, field_validator, model_validator

from shoestring.config import StrictConfig, validate_config
from shoestring.data.sources import DEFAULT_TEST_FRACTION
from shoestring.errors import ConfigError

_Section = StrictConfig


class ModelConfig(_Section):
    """``[model]``: which network to train."""

    name: str = Field("seed-mlp", description="seed-mlp, mlp or cnn")
    hidden: list[int] = Field([128, 64], description="hidden layer widths of 'mlp'")
    channels: list[int] = Field([32, 64], description="conv channel widths of 'cnn'")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout probability")
    activation: Literal["relu", "gelu", "tanh"] = Field("relu", description="MLP activation")
    # Transformer shape fields: unset (None) means "the preset's value".
    n_layer: int | None = Field(None, ge=1, description="transformer blocks")
    n_head: int | None = Field(None, ge=1, description="attention heads")
    n_kv_head: int | None = Field(None, ge=1, description="key/value heads (grouped-query)")
    n_embd: int | None = Field(None, ge=1, description="transformer width")
    block_size: int | None = Field(None, ge=1, description="context length in tokens")
    vocab_size: int | None = Field(None, ge=1, description="vocabulary (default: tokenizer's)")
    intermediate_size: int | None = Field(None, ge=1, description="MLP width of a block")
    bias: bool | None = Field(None, description="biases in linear layers and norms")
    norm: Literal["layernorm", "rmsnorm"] | None = Field(None, description="block norm")
    mlp: Literal["gelu", "swiglu"] | None = Field(None, description="block MLP")
    pos: Literal["learned", "rope"] | None = Field(None, description="position encoding")
    rope_theta: float | None = Field(None, gt=0, description="RoPE base frequency")
    tie_embeddings: bool | None = Field(None, description="share input and output embeddings")


class DataConfig(_Section):
    """``[data]``: where the examples come from and how they are fed."""

    @model_validator(mode="before")
    @classmethod
    def _release_0_1_names(cls, values: Any) -> Any:
        """Release 0.1 called the label column ``target`` and the JSONL label field
        ``label_field``; their config files (and run folders) still load."""
        if isinstance(values, dict) and ("target" in values or "label_field" in values):
            values = dict(values)
            old = values.pop("target", None) or values.pop("label_field", None)
            values.pop("label_field", None)
            values.setdefault("label", old)
        return values

    source: str = Field("digits", description="digits, fashion-mnist, idx:DIR, csv:PATH, "
                        "parquet:PATH, images:DIR, prepared:DIR[#val], text:PATH, jsonl:PATH")
    label: str | None = Field(None, description="the column (csv:, parquet:) or JSONL field "
                              "(default 'label') that holds what to predict")
    task: Literal["classification", "regression"] | None = Field(
        None, description="inferred from the data when unset")
    test_fraction: float = Field(DEFAULT_TEST_FRACTION, gt=0.0, lt=1.0,
                                 description="hold-out share for sources without a test split")
    group: list[str] | None = Field(
        None, description="table columns naming groups (e.g. sex,age_band): set aside, never "
        "features; recorded so 'shoestring audit' compares the model across them")
    normalize: Literal["auto", "scale", "standardize", "none"] = Field(
        "auto", description="auto: standardize tables, scale images; scale: raw × source "
        "scale (e.g. /255); standardize: also z-score per feature with training-split "
        "statistics; none: raw values. Regression targets are standardized unless none")
    augment: str | None = Field(
        None, description="training-time augmentation, e.g. 'crop,rotate,flip' or 'trivial'")
    tokenizer: Literal["char", "byte", "bpe"] | None = Field(
        None, description="text tokenizer (default: char for text:, byte for jsonl:)")
    bpe_vocab_size: int | None = Field(None, ge=260, description="BPE vocabulary size")
    text_field: str = Field("text", description="JSONL field holding the text")
    max_length: int | None = Field(None, ge=2, description="JSONL texts are cut to this many tokens")
    val_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="validation share: the end of a text corpus; for "
        "other data, carved from the training split (stratified, seeded) when the run selects "
        "on held-out data (--target, --recipe) and the source ships no validation split")


    def source_options(self, seed: int = 0, base: Any = None) -> Any:
        """The data loaders' options for this section (``base`` supplies the rest)."""
        from shoestring.data.sources import SourceOptions

        base = base or SourceOptions()
        return SourceOptions(label=self.label, task=self.task, test_fraction=self.test_fraction,
                             seed=seed, fashion_mnist_dir=base.fashion_mnist_dir,
                             text_field=self.text_field, tokenizer=self.tokenizer,
                             bpe_vocab_size=self.bpe_vocab_size, max_length=self.max_length,
                             groups=tuple(self.group or ()), cache_dir=base.cache_dir)


class TrainSection(_Section):
    """``[train]``: optimisation, budgets, checkpoints."""

    epochs: int = Field(10, ge=1, description="passes over the training split")
    batch_size: int = Field(128, ge=1, description="examples per optimizer step")
    optimizer: Literal["sgd", "adam", "adamw", "adam8bit", "paged-adam8bit"] = Field(
        "adam", description="sgd uses momentum; adam8bit: bitsandbytes' 8-bit AdamW; "
        "paged-adam8bit: its states paged between GPU and CPU RAM (CUDA)")
    lr: float = Field(1e-3, gt=0.0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 (sgd, adam) or decoupled (adamw)")
    schedule: Literal["constant", "cosine", "onecycle", "warmup"] = Field(
        "constant", description="learning-rate schedule")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps (warmup, cosine)")
    seed: int = Field(0, description="seeds initialisation, data order and dropout")
    eval_every: int = Field(0, ge=0, description="evaluate every N steps (0: once per epoch)")
    checkpoint_every: int = Field(500, ge=0,
                                  description="checkpoint every N steps (0: epoch ends only)")
    max_time: float | None = Field(None, gt=0, description="stop after this many seconds")
    max_cost: float | None = Field(None, gt=0, description="stop after this many dollars "
                                   "(needs a price per hour)")
    price_per_hour: float | None = Field(
        None, ge=0.0, description="machine price in $/h (default: $SHOESTRING_PRICE_PER_HOUR, "
        "else 0 for a machine you own)")
    target: str | None = Field(None, description="METRIC=VALUE checked on the validation split, "
                               "e.g. val_accuracy=0.87 (test_X means val_X)")
    recipe: Literal["fast"] | None = Field(
        None, description="'fast': pick batch size and schedule to reach the target soonest")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: measured "
                                "during training: one or all cores, whichever steps faster)")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    eval_iters: int = Field(20, ge=1, description="validation batches per evaluation (text)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to train")
    precision: Literal["auto", "fp32", "bf16", "fp16", "bf16-true"] = Field(
        "auto", description="auto picks the fastest the device supports natively (on a CPU "
        "with avx512_bf16 or AMX: bf16 for GPT models, else fp32); bf16 on a GPU and fp16: "
        "autocast over fp32 weights; bf16 on a CPU: linear layers multiply in bf16, all else "
        "fp32; bf16-true: bf16 weights, gradients and optimizer states (half the memory; the "
        "saved weights are bf16)")
    compile: bool | None = Field(None, description="torch.compile the model (default: when "
                                 "the steps measured early show the run is long enough to pay "
                                 "for compiling)")
    activation_checkpointing: bool = Field(False, description="recompute block activations "
                                           "in backward to save memory")
    micro_batch_size: int | None = Field(None, ge=1, description="examples per forward pass "
                                         "(default: largest that fits; accumulates to batch_size)")
    max_memory: float | None = Field(None, gt=0, description="GiB the training step may use "
                                     "(CPU micro-batch search)")
    grad_clip: float | None = Field(None, gt=0, description="clip the gradient norm to this")
    nproc: int = Field(1, ge=1, description="processes per node (torchrun); >1 means DDP/FSDP")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="data-parallel strategy")
    nnodes: str = Field("1", description="torchrun --nnodes (e.g. 2 or 1:4 for elastic)")
    rdzv_endpoint: str | None = Field(None, description="torchrun rendezvous host:port")
    max_restarts: int = Field(0, ge=0, description="elastic restarts; each resumes from the "
                              "latest checkpoint")
    plan_first: bool = Field(False, description="print the plan first and refuse a "
                             "configuration that will not fit in memory")
    # --- objectives and fine-tuning recipes (docs/finetune.md); names as in `plan`
    objective: Literal["auto", "mlm"] = Field(
        "auto", description="auto: next-token prediction for gpt on text:, classification "
        "on labelled data; mlm: masked-language-model pre-training of an encoder on text: "
        "(BERT's 80/10/10 masking)")
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0,
                                   description="share of tokens masked by --objective mlm")
    finetune: Literal["full", "lora", "qlora"] | None = Field(
        None, description="with --init-from: full (every weight), lora (frozen base + "
        "low-rank adapters) or qlora (adapters over a 4-bit base; bitsandbytes)")
    lora_rank: int = Field(16, ge=1, description="LoRA rank r")
    lora_alpha: float = Field(32.0, gt=0.0, description="LoRA scale: updates are "
                              "multiplied by alpha / rank")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the adapters' "
                                "input")
    lora_targets: str = Field("q,k,v,o", description="comma-separated: q,k,v,o,gate,up,down "
                              "(SwiGLU), fc,proj (GELU), or all; HF names (q_proj…) work too")
    merge: bool = Field(False, description="after LoRA training, fold the adapters into the "
                        "weights and save the whole model (default: the adapters alone)")
    optimizer_in_backward: bool = Field(False, description="step each parameter as soon as "
                                        "its gradient exists, then free it (no gradient "
                                        "accumulation or clipping)")
    loss_chunks: int = Field(1, ge=1, description="gpt: cross-entropy in this many chunks "
                             "that never hold the full logits (1: plain)")
    offload_activations: bool = Field(False, description="keep activations saved for "
                                      "backward in CPU RAM (GPU memory saver; no-op on CPU)")

    @field_validator("target")
    @classmethod
    def _check_target(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from shoestring.errors import ShoestringError
        from shoestring.train.stopping import parse_target

        try:
            parse_target(v)
        except ShoestringError as exc:  # pydantic collects ValueErrors only
            raise ValueError(f"{exc.message}; {exc.hint}") from None
        return v


class PrivacyConfig(_Section):
    """``[privacy]`` (``--dp epsilon=3,...``): differentially private training by DP-SGD
    (Abadi et al. 2016) through Opacus; see docs/privacy.md."""

    epsilon: float = Field(gt=0.0, description="the privacy budget ε the whole run may spend "
                           "(smaller: more private, more noise)")
    delta: float | None = Field(None, gt=0.0, lt=1.0, description="δ, the chance the guarantee "
                                "fails; must be below 1/N (default 1/N^1.1)")
    max_grad_norm: float = Field(1.0, gt=0.0, description="C: each example's gradient is "
                                 "clipped to this L2 norm before the noise is added")
    accountant: Literal["rdp", "prv"] = Field(
        "rdp", description="how ε is counted: rdp (Rényi DP, Mironov 2017) or prv (privacy "
        "random variables, Gopi et al. 2021: a tighter ε for the same noise)")


def parse_dp(spec: str) -> dict[str, Any]:
    """``--dp epsilon=3,delta=1e-6,max-grad-norm=1`` as ``[privacy]`` values (strings that
    the config validates: every problem is reported at once).

    >>> parse_dp("epsilon=3, max-grad-norm=0.5")
    {'epsilon': '3', 'max_grad_norm': '0.5'}
    >>> parse_dp("3")        # a bare number is the budget
    {'epsilon': '3'}
    """
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if len(items) == 1 and "=" not in items[0] and items[0][:1] in "0123456789.-":
        return {"epsilon": items[0]}
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        # A key without "=value" reaches validation as "": "not a valid number".
        out[key.strip().replace("-", "_")] = value.strip()
    return out


class TrainConfig(_Section):
    """Everything ``shoestring train`` needs; ``out`` is the run folder."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    out: Path | None = Field(None, description="run folder (default: runs/<name>)")
    init_from: str | None = Field(None, description="warm start: a run folder, or a run's id "
                                  "or name in the ledger, whose weights this run starts from")
    name: str | None = Field(None, description="run name (default: model-data-time)")
    privacy: PrivacyConfig | None = Field(None, description="differential privacy (DP-SGD): "
                                          "none unless given")
    resume: bool = Field(False, description="continue from the latest good checkpoint in out")
    encrypt: bool = Field(False, description="encrypt every file of the run folder (AES-256-GCM; "
                          "key from --key-file or $SHOESTRING_ENCRYPTION_KEY; docs/privacy.md)")

    def to_toml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        return tomli_w.dumps(data)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainSection}


def read_toml(path: Path) -> dict[str, Any]:
    from shoestring.io import read_text

    try:
        return tomllib.loads(read_text(path))
    except FileNotFoundError:
        raise ConfigError([f"config file '{path}' does not exist"],
                          hint="check the path, or pass options as flags") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file '{path}' is not valid TOML: {exc}"],
                          hint="fix the syntax at the position shown") from None


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into ``base``; ``None`` values mean 'not given'."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif isinstance(value, dict):
            out[key] = merge({}, value)
        else:
            out[key] = value
    return out


PRICE_ENV = "SHOESTRING_PRICE_PER_HOUR"


def resolve_price(config: TrainConfig, environ: Mapping[str, str]) -> TrainConfig:
    """The config with its price per hour decided: given, else ``$SHOESTRING_PRICE_PER_HOUR``,
    else 0. A dollar budget without a price is an error, not a budget that never ends.

    >>> resolve_price(resolve_config(), {PRICE_ENV: "1.2"}).train.price_per_hour
    1.2
    """
    t = config.train
    price = t.price_per_hour
    if price is None:
        raw = environ.get(PRICE_ENV, "").strip()
        try:
            price = float(raw) if raw else 0.0
        except ValueError:
            price = -1.0
        if not price >= 0.0:  # also NaN
            raise ConfigError([f"{PRICE_ENV}={raw!r} is not a price in dollars per hour"],
                              hint=f"e.g. export {PRICE_ENV}=1.20")
    if t.max_cost is not None and price <= 0.0:
        raise ConfigError([f"train.max_cost: a ${t.max_cost:g} budget needs the machine's "
                           "price per hour, and none is set"],
                          hint=f"pass --price-per-hour 1.20, or set {PRICE_ENV}=1.20 once in "
                          "your environment")
    return config.model_copy(update={"train": t.model_copy(update={"price_per_hour": price})})


def resolve_config(file_values: dict[str, Any] | None = None,
                   overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Validate file values plus overrides into a :class:`TrainConfig`.

    Every problem is reported in one :class:`ConfigError`.

    >>> resolve_config({"train": {"epochs": 2}}, {"train": {"lr": 0.01}}).train.lr
    0.01
    """
    return validate_config(TrainConfig, merge(file_values or {}, overrides or {}),
                           hint="fix the values above (see 'shoestring train --help')")
