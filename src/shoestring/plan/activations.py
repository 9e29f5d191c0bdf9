"""Activation memory of a transformer step, derived tensor by tensor.

Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models", arXiv:2205.05198, section 4) count the tensors a GPT
block saves for backward: ``s·b·h·(34 + 5·a·s/h)`` bytes per layer with 16-bit
activations and dropout, ``34·s·b·h`` when the attention core is recomputed
("selective"), ``2·s·b·h`` (the block input) under full recomputation. Their
34 fixes one layout (fused QKV, 4h GELU MLP, dropout masks, multi-head
attention). Shoestring's blocks differ — no dropout, fused (flash) attention
that keeps a log-sum-exp instead of the ``s×s`` scores, SwiGLU, rotary
positions, grouped-query K/V, an fp32 residual stream under autocast — so the
same count is redone here from the op graph of ``shoestring.models``: each
entry below is one tensor autograd keeps, in bytes per token.

Rules used (PyTorch autograd saves an input only when a gradient needs it):
a Linear saves its input only if its weight is trained; autocast casts a
Linear's fp32 input to bf16 and saves the copy; LayerNorm and Shoestring's
RMSNorm run in the residual's dtype; SDPA saves q, k, v, its output and a
per-head log-sum-exp (fp32).
"""

from __future__ import annotations

from shoestring.plan.setup import StepSetup
from shoestring.plan.specs import ModelSpec

FP32 = 4


def dtype_bytes(setup: StepSetup) -> tuple[int, int]:
    """(compute bytes e, residual-stream bytes r) of the step's activations.

    Under bf16 autocast matmul outputs are bf16 but the residual stream stays
    fp32 (embedding and norms run in fp32, and bf16 + fp32 promotes to fp32).
    A LoRA base stored in bf16 makes the whole stream bf16.
    """
    if setup.precision == "fp32":
        return FP32, FP32
    if setup.precision == "bf16" or setup.adapters:
        return 2, 2
    return 2, FP32


def _norm_bytes(spec: ModelSpec, setup: StepSetup) -> tuple[int, bool, int]:
    """(bytes per saved norm-input element, saves the normalised x?, per-token stat bytes).

    Composite RMSNorm (torch's CPU path) upcasts its input to fp32 and saves
    that copy and, when its weight trains, the fp32 ``x·rsqrt(mean(x²))`` too;
    the fused CUDA kernel keeps the input as is and 1/rms. LayerNorm keeps its
    input and fp32 mean and 1/std.
    """
    _, r = dtype_bytes(setup)
    if spec.norm == "layernorm":
        return r, False, 2 * FP32
    if setup.kernels == "cpu":
        return FP32, not setup.adapters, FP32
    return r, False, FP32


def _trained(setup: StepSetup, *roles: str) -> bool:
    """Does a Linear carrying ``roles`` train a weight (full) or an adapter (LoRA)?"""
    return not setup.adapters or bool(set(roles) & set(setup.lora_targets))


def block_terms(spec: ModelSpec, setup: StepSetup) -> dict[str, float]:
    """Bytes per token that one block saves for backward, by tensor."""
    h, kv, f, a = spec.hidden, spec.kv_dim, spec.intermediate, spec.heads
    e, r = dtype_bytes(setup)
    nr, rms_extra, stats = _norm_bytes(spec, setup)
    t: dict[str, float] = {}
    if spec.family == "decoder":
        t["norm 1 input (residual)"] = h * nr + stats
        if rms_extra:
            t["norm 1 normalised x"] = h * FP32
        if _trained(setup, "q", "k", "v"):
            t["q/k/v projection input"] = h * e
        t["q, k, v (fused projection output)"] = (h + 2 * kv) * e
        if spec.pos == "rope":
            t["rotated q, k"] = (h + kv) * e
        t["attention output + log-sum-exp"] = h * e + a * FP32
        t["norm 2 input (residual)"] = h * nr + stats
        if rms_extra:
            t["norm 2 normalised x"] = h * FP32
        up_roles = ("gate", "up") if spec.mlp == "swiglu" else ("fc",)
        if _trained(setup, *up_roles):
            t["MLP input"] = h * e
        if spec.mlp == "swiglu":
            t["gate | up (fused projection output)"] = 2 * f * e
            t["silu(gate)"] = f * e
            if _trained(setup, "down"):
                t["silu(gate)·up"] = f * e
        else:
            t["fc output (GELU input)"] = f * e
            if _trained(setup, "proj"):
                t["GELU output"] = f * e
    else:  # post-norm BERT layer
        if _trained(setup, "q", "k", "v"):
            t["layer input (q/k/v projection input)"] = h * e
        t["q, k, v"] = 3 * h * e
        t["attention output + log-sum-exp"] = h * e + a * FP32
        t["norm 1 input (residual sum)"] = h * r + stats
        if _trained(setup, "fc"):
            t["FFN input"] = h * e
        t["fc output (GELU input)"] = f * e
        if _trained(setup, "proj"):
            t["GELU output"] = f * e
        t["norm 2 input (residual sum)"] = h * r + stats
    if setup.adapters:
        roles = [role for role in setup.lora_targets if role in _roles(spec)]
        t["LoRA A outputs"] = len(roles) * setup.lora_rank * e
        if setup.lora_dropout > 0:
            # Each adapter keeps its own dropped input (to differentiate A) and a
            # bool mask (PEFT: lora_B(lora_A(dropout(x)))).
            widths = {"down": spec.intermediate, "proj": spec.intermediate}
            t["LoRA dropout inputs and masks"] = sum(widths.get(r, h) * (e + 1) for r in roles)
    if setup.compiled:
        # AOTAutograd's min-cut partitioner recomputes pointwise results in
        # backward from their (saved) inputs rather than saving them too.
        # Conservatively only the activation's output goes (recomputed from
        # gate|up); torchtune measured eager → compiled at −9 GiB on Llama 3.2
        # 3B with 8,192 tokens, loss included.
        t.pop("silu(gate)", None)
    return t


def _roles(spec: ModelSpec) -> tuple[str, ...]:
    mlp = ("gate", "up", "down") if spec.mlp == "swiglu" else ("fc", "proj")
    return ("q", "k", "v", "o") + mlp


def final_terms(spec: ModelSpec, setup: StepSetup) -> dict[str, float]:
    """Bytes per token saved after the blocks (final norm, LM head input)."""
    if spec.family != "decoder":
        return {}
    h = spec.hidden
    e, _ = dtype_bytes(setup)
    nr, rms_extra, stats = _norm_bytes(spec, setup)
    t = {"final norm input": h * nr + stats}
    if rms_extra:
        t["final norm normalised x"] = h * FP32
    if not setup.adapters:  # a frozen LM head needs no input for its gradient
        t["LM head input"] = h * e
    return t


def loss_terms(spec: ModelSpec, setup: StepSetup
               ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Bytes per token of the loss of a decoder: (forward end, loss backward, held after).

    - Plain cross-entropy, ``cross_entropy(logits.float())``: the caller holds
      the logits (``logits, loss = model(x, y)``) through backward; the loss
      saves the fp32 log-softmax, and its backward adds the NLL gradient and
      the log-softmax gradient, both fp32 ``[T, V]``.
    - Chunked, fused (``loss_chunks`` > 1): each chunk's logits, their fp32
      copy, log-softmax and gradients exist only while that chunk is worked
      on (the head's matmul runs inside the chunk), so ``1/N`` of the above;
      the gradient with respect to the final hidden states is kept.
    - Chunked output, full loss graph (``loss_keeps_logits``, torchtune's
      CEWithChunkedOutputLoss): the head's bf16 logits all exist at the end
      of the forward, and every chunk's fp32 log-softmax is saved for backward.
    """
    if spec.family != "decoder":
        return {}, {}, {}
    v = spec.vocab_size
    e, _ = dtype_bytes(setup)
    if setup.loss_impl == "fused-inplace":
        # Unsloth's Fast_CrossEntropyLoss (unsloth/kernels/cross_entropy_loss.py):
        # the forward kernel stores one fp32 log-sum-exp per row, the backward
        # kernel overwrites the logits with their gradient and returns them, so
        # a chunk (or the whole loss) costs its bf16 logits and nothing more.
        c = 1 / setup.loss_chunks
        chunk = {"one loss chunk (bf16 logits, overwritten by their gradient)": v * e * c,
                 "final hidden-state gradient": spec.hidden * e}
        return chunk, chunk, {}
    if setup.loss_impl != "bf16-logits" and not setup.chunked_loss:
        # The model returns logits.float(), which the caller holds (torchtune's
        # decoder; Hugging Face transformers < 4.45, whose loss also shifts it
        # into a contiguous copy); cross_entropy saves its log-softmax and
        # makes two fp32 gradients.
        bwd = {"fp32 logits (held by the caller)": v * FP32}
        if setup.loss_impl == "hf-shifted":
            bwd["shifted fp32 copy"] = v * FP32
        bwd |= {"log-softmax output (fp32)": v * FP32, "NLL gradient (fp32)": v * FP32,
                "log-softmax gradient (fp32)": v * FP32}
        fwd = {k: x for k, x in bwd.items() if "gradient" not in k} | {"bf16 logits": v * e}
        return fwd, bwd, {"fp32 logits (held by the caller)": v * FP32}
    if setup.compiled and not setup.chunked_loss:
        # Compiled, the upcast copies fuse away: the held logits, the saved
        # fp32 log-softmax and one fp32 gradient remain.
        fwd = {"logits": v * e, "log-softmax output (fp32)": v * FP32}
        bwd = {"logits (held by the caller)": v * e, "log-softmax output (fp32)": v * FP32,
               "logits gradient (fp32)": v * FP32}
        return fwd, bwd, {"logits (held by the caller)": v * e}
    if setup.compiled and setup.loss_keeps_logits:
        # Compiled, each chunk's ``cross_entropy(logits.float())`` is one graph
        # whose forward saves its bf16 input and two fp32 numbers per row (max
        # and log-sum-exp) and whose backward writes only the bf16 logits
        # gradient: Inductor fuses the upcast, softmax and downcast, so no fp32
        # [tokens, vocab] buffer is ever allocated (the generated code of torch
        # 2.13, checked with TORCH_LOGS=output_code: forward buffers [rows, 1]
        # fp32, backward one [rows, vocab] bf16).
        c = 1 / setup.loss_chunks
        fwd = {"logits (all chunks)": v * e}
        bwd = {"logits (all chunks, saved)": v * e,
               "one chunk's logits gradient": v * e * c}
        return fwd, bwd, {}
    if not setup.chunked_loss:
        fwd = {"logits": v * e, "logits fp32 copy": v * FP32,
               "log-softmax output (fp32)": v * FP32}
        bwd = {"logits (held by the caller)": v * e, "log-softmax output (fp32)": v * FP32,
               "NLL gradient (fp32)": v * FP32, "log-softmax gradient (fp32)": v * FP32}
        return fwd, bwd, {"logits (held by the caller)": v * e}
    c = 1 / setup.loss_chunks
    if setup.loss_keeps_logits:
        fwd = {"logits (all chunks)": v * e, "log-softmax outputs (fp32, all chunks)": v * FP32,
               "fp32 copy of one chunk": v * FP32 * c}
        bwd = {"log-softmax outputs (fp32, all chunks)": v * FP32,
               "one chunk's gradients (fp32) and logits gradient": v * (2 * FP32 + e) * c}
        return fwd, bwd, {}
    chunk = {"one loss chunk (logits, fp32 copy, log-softmax, gradients)":
             v * (e + 3 * FP32) * c,
             "final hidden-state gradient": spec.hidden * e}
    return chunk, chunk, {}


def chunk_saved_bytes(spec: ModelSpec, setup: StepSetup) -> float:
    """Bytes per token that a chunked-output loss keeps for every chunk until its backward.

    Compiled: the bf16 logits (the chunk graph's saved input); eager: the fp32
    log-softmax of each chunk (the bf16 logits themselves are freed).
    """
    if spec.family != "decoder" or not (setup.chunked_loss and setup.loss_keeps_logits):
        return 0.0
    e, _ = dtype_bytes(setup)
    return spec.vocab_size * (e if setup.compiled else FP32)


def mlp_terms(spec: ModelSpec, setup: StepSetup) -> dict[str, float]:
    """Bytes per sample of an MLP: the input, each activation output, the logits."""
    e, _ = dtype_bytes(setup)
    w = spec.widths
    return {"input": w[0] * FP32, "hidden activations": sum(w[1:-1]) * e,
            "logits, log-softmax and their gradients": 4 * w[-1] * FP32}


def backward_transient(spec: ModelSpec, setup: StepSetup, block: dict[str, float]) -> float:
    """Bytes per token that one block's backward adds at its worst moment (in its MLP).

    By the time the MLP's activation is differentiated, the tensors saved
    after it (the down-projection input; a post-norm layer's second norm
    input) are freed, and the gradients w.r.t. the activation's output and
    input coexist: two [T, f] tensors for GELU; for SwiGLU the gradients of
    the product, of silu(gate) and of up (three [T, f]).
    """
    e, r = dtype_bytes(setup)
    f, h = spec.intermediate, spec.hidden
    freed = sum(v for k, v in block.items()
                if k in ("GELU output", "silu(gate)·up", "norm 2 input (residual sum)"))
    mlp = (3 * f if spec.mlp == "swiglu" else 2 * f) * e - freed
    if spec.family != "encoder":
        return mlp
    # A post-norm layer's backward starts in its LayerNorm while every saved
    # tensor is still alive: the incoming and outgoing gradients (2h in the
    # residual dtype) plus fp32 workspaces of the CPU LayerNorm backward
    # (3h; measured in trace mode on bert-base, fp32 and bf16-mixed alike).
    return max(mlp, 2 * h * r + 3 * h * FP32)
