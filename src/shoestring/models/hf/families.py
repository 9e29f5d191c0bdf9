"""The Hugging Face families Shoestring reads and writes, and how each maps onto its modules.

Each family says three things, both ways: which ``config.json`` fields give
which Shoestring shape (:meth:`Family.architecture` / :meth:`Family.hf_config`),
and which Hugging Face tensors make each Shoestring tensor (:meth:`Family.rules`).

- **GPT-2** (``gpt2``; Radford et al. 2019; HF ``GPT2LMHeadModel``) is
  Shoestring's default ``gpt`` layout. Its linear layers are ``Conv1D`` modules
  that store weights as ``[in, out]``, so they are transposed.
- **Llama** (``llama``; HF ``LlamaForCausalLM``) and **Mistral** (``mistral``,
  Jiang et al. 2023, arXiv:2310.06825) are the ``gpt`` family with RMSNorm,
  SwiGLU, RoPE, grouped-query attention and an untied head; Mistral adds a
  sliding attention window. Their separate ``q/k/v`` and ``gate/up``
  projections are concatenated into Shoestring's fused ``c_attn`` and
  ``c_fc``. The Hugging Face weights already use the "rotate half" RoPE layout
  Shoestring uses, so no permutation is needed.
- **BERT** (``bert``; Devlin et al. 2019; HF ``BertModel``,
  ``BertForSequenceClassification``, ``BertForMaskedLM``) is the ``encoder``
  family; ``query/key/value`` are concatenated into ``qkv``.

Features a family has and Shoestring does not (say, GPT-2's
``scale_attn_by_inverse_layer_idx`` or a ``head_dim`` other than
``hidden_size / heads``) are refused with the field named, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shoestring.errors import ShoestringError
from shoestring.models.gpt import GPTConfig

Architecture = dict[str, Any]
HINT = "Shoestring imports GPT-2, Llama, Mistral and BERT checkpoints in their standard form"


@dataclass(frozen=True)
class Rule:
    """One Shoestring tensor and the Hugging Face tensor(s) it is made of.

    ``theirs`` holds one name (copied; transposed when ``transpose``) or several
    concatenated along dim 0 (fused projections) whose dim-0 sizes are ``sizes``.
    ``body`` names sit under the checkpoint's base-model prefix (``model.``,
    ``transformer.``, ``bert.``); head names (``lm_head``, ``classifier``,
    ``cls.…``) sit at the top.
    """

    ours: str
    theirs: tuple[str, ...]
    sizes: tuple[int, ...] = ()
    transpose: bool = False
    body: bool = True

    def hf_shapes(self, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The Hugging Face tensors' shapes, given the Shoestring tensor's."""
        if self.transpose:
            return [tuple(reversed(shape))]
        if len(self.theirs) == 1:
            return [tuple(shape)]
        return [(n, *shape[1:]) for n in self.sizes]


@dataclass(frozen=True)
class Imported:
    """A ``config.json`` read as a Shoestring architecture."""

    model_type: str
    architecture: Architecture
    class_names: list[str] | None = None
    notes: tuple[str, ...] = ()


def _need(hf: dict, *keys: str) -> list[Any]:
    missing = [k for k in keys if not isinstance(hf.get(k), (int, float)) or
               isinstance(hf.get(k), bool)]
    if missing:
        raise ShoestringError(f"config.json lacks {', '.join(missing)} (model_type "
                              f"{hf.get('model_type')!r})",
                              hint="the file is incomplete or damaged; restore it")
    return [hf[k] for k in keys]


def _refuse(model_type: str, problems: list[str]) -> None:
    if problems:
        raise ShoestringError(f"this {model_type} checkpoint uses features Shoestring does not "
                              f"implement: {'; '.join(problems)}", hint=HINT)


def _pair(name: str, body: bool = True) -> list[tuple[str, str, bool]]:
    return [(f"{name}.weight", "weight", body), (f"{name}.bias", "bias", body)]


class GPT2:
    """``gpt2`` ⇄ Shoestring ``gpt`` with learned positions, LayerNorm, GELU and biases."""

    model_types = ("gpt2",)
    prefixes = ("transformer.", "")
    anchor = "wte.weight"
    ignored = (re.compile(r"h\.\d+\.attn\.(masked_)?bias$"),)

    def architecture(self, hf: dict) -> Imported:
        n_layer, n_head, n_embd, n_pos, vocab = _need(hf, "n_layer", "n_head", "n_embd",
                                                      "n_positions", "vocab_size")
        problems = []
        act = hf.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            problems.append(f"activation_function {act!r} (Shoestring's GPT-2 MLP is the tanh "
                            "GELU, 'gelu_new')")
        for key, ok in (("scale_attn_by_inverse_layer_idx", False), ("add_cross_attention", False),
                        ("scale_attn_weights", True)):
            if bool(hf.get(key, ok)) != ok:
                problems.append(f"{key}={hf.get(key)!r}")
        _refuse("gpt2", problems)
        params = {"n_layer": n_layer, "n_head": n_head, "n_embd": n_embd, "block_size": n_pos,
                  "vocab_size": vocab, "intermediate_size": hf.get("n_inner"),
                  "dropout": float(hf.get("resid_pdrop", 0.0) or 0.0),
                  "norm_eps": float(hf.get("layer_norm_epsilon", 1e-5)), "bias": True,
                  "norm": "layernorm", "mlp": "gelu", "pos": "learned",
                  "tie_embeddings": bool(hf.get("tie_word_embeddings", True))}
        return Imported("gpt2", {"family": "gpt", "name": "hf-gpt2", "params": params})

    def hf_config(self, arch: Architecture) -> dict:
        p = arch["params"]
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                "n_layer": p["n_layer"], "n_head": p["n_head"], "n_embd": p["n_embd"],
                "n_positions": p["block_size"], "n_ctx": p["block_size"],
                "vocab_size": p["vocab_size"], "n_inner": p.get("intermediate_size"),
                "activation_function": "gelu_new", "layer_norm_epsilon": p["norm_eps"],
                "resid_pdrop": p["dropout"], "embd_pdrop": p["dropout"],
                "attn_pdrop": p["dropout"], "tie_word_embeddings": p["tie_embeddings"],
                "bos_token_id": None, "eos_token_id": None}

    def rules(self, p: dict) -> list[Rule]:
        out = [Rule("wte.weight", ("wte.weight",)), Rule("wpe.weight", ("wpe.weight",))]
        for i in range(p["n_layer"]):
            for ours, theirs in (("ln_1", "ln_1"), ("ln_2", "ln_2")):
                out += [Rule(f"blocks.{i}.{ours}.{k}", (f"h.{i}.{theirs}.{k}",))
                        for k in ("weight", "bias")]
            for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                out.append(Rule(f"blocks.{i}.{name}.weight", (f"h.{i}.{name}.weight",),
                                transpose=True))  # Conv1D: [in, out]
                out.append(Rule(f"blocks.{i}.{name}.bias", (f"h.{i}.{name}.bias",)))
        out += [Rule(f"ln_f.{k}", (f"ln_f.{k}",)) for k in ("weight", "bias")]
        out.append(Rule("lm_head.weight", ("lm_head.weight",), body=False))
        return out


def _rope(hf: dict) -> tuple[float, dict | None, list[str]]:
    """``rope_theta`` and the scaling dict, from transformers 4's ``rope_theta`` +
    ``rope_scaling`` or transformers 5's ``rope_parameters``."""
    params = dict(hf.get("rope_parameters") or {})
    theta = float(params.pop("rope_theta", hf.get("rope_theta", 10000.0)))
    scaling = dict(hf.get("rope_scaling") or params)
    kind = scaling.pop("rope_type", scaling.pop("type", "default"))
    problems = []
    if float(scaling.pop("partial_rotary_factor", 1.0)) != 1.0:
        problems.append("partial_rotary_factor below 1")
    if kind == "default":
        return theta, None, problems
    if kind == "linear":
        return theta, {"rope_type": "linear", "factor": scaling.get("factor")}, problems
    if kind == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor",
                "original_max_position_embeddings")
        return theta, {"rope_type": "llama3", **{k: scaling.get(k) for k in keys}}, problems
    problems.append(f"RoPE scaling {kind!r} (supported: default, linear, llama3)")
    return theta, None, problems


class Llama:
    """``llama`` and ``mistral`` ⇄ Shoestring ``gpt`` with RMSNorm, SwiGLU, RoPE and GQA."""

    model_types = ("llama", "mistral")
    prefixes = ("model.", "")
    anchor = "embed_tokens.weight"
    ignored = (re.compile(r"rotary_emb\.inv_freq$"),)

    def architecture(self, hf: dict) -> Imported:
        model_type = hf["model_type"]
        d, n_layer, n_head, ffn, vocab, n_pos = _need(
            hf, "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "vocab_size", "max_position_embeddings")
        n_kv = hf.get("num_key_value_heads") or n_head
        theta, scaling, problems = _rope(hf)
        if hf.get("hidden_act", "silu") != "silu":
            problems.append(f"hidden_act {hf.get('hidden_act')!r} (SwiGLU uses 'silu')")
        if hf.get("head_dim") not in (None, d // n_head):
            problems.append(f"head_dim {hf['head_dim']} other than hidden_size / "
                            f"num_attention_heads = {d // n_head}")
        attn_bias, mlp_bias = bool(hf.get("attention_bias")), bool(hf.get("mlp_bias"))
        if attn_bias != mlp_bias:
            problems.append(f"attention_bias={attn_bias} with mlp_bias={mlp_bias} (Shoestring "
                            "has biases on all projections or none)")
        _refuse(model_type, problems)
        window = hf.get("sliding_window") if model_type == "mistral" else None
        if window is not None and hf.get("use_sliding_window") is False:
            window = None
        params = {"n_layer": n_layer, "n_head": n_head, "n_kv_head": n_kv, "n_embd": d,
                  "block_size": n_pos, "vocab_size": vocab, "intermediate_size": ffn,
                  "dropout": float(hf.get("attention_dropout", 0.0) or 0.0), "bias": attn_bias,
                  "norm": "rmsnorm", "mlp": "swiglu", "pos": "rope", "rope_theta": theta,
                  "rope_scaling": scaling, "sliding_window": window,
                  "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
                  "norm_eps": float(hf.get("rms_norm_eps", 1e-6))}
        return Imported(model_type, {"family": "gpt", "name": f"hf-{model_type}",
                                     "params": params})

    def hf_config(self, arch: Architecture) -> dict:
        p = arch["params"]
        mistral = p.get("sliding_window") is not None
        if mistral and p["bias"]:
            raise ShoestringError("a sliding-window model with biases has no Hugging Face "
                                  "family (Mistral has no biases)",
                                  hint="export without biases or without sliding_window")
        hd = p["n_embd"] // p["n_head"]
        ffn = GPTConfig(**p).hidden_size  # a native llama may leave it to the SwiGLU rule
        out = {"architectures": ["MistralForCausalLM" if mistral else "LlamaForCausalLM"],
               "model_type": "mistral" if mistral else "llama",
               "hidden_size": p["n_embd"], "num_hidden_layers": p["n_layer"],
               "num_attention_heads": p["n_head"],
               "num_key_value_heads": p.get("n_kv_head") or p["n_head"],
               "intermediate_size": ffn, "vocab_size": p["vocab_size"],
               "max_position_embeddings": p["block_size"], "rms_norm_eps": p["norm_eps"],
               "rope_theta": p["rope_theta"], "rope_scaling": p.get("rope_scaling"),
               "hidden_act": "silu", "head_dim": hd, "attention_dropout": p["dropout"],
               "tie_word_embeddings": p["tie_embeddings"],
               "bos_token_id": None, "eos_token_id": None}
        if mistral:
            out["sliding_window"] = p["sliding_window"]
        else:
            out.update(attention_bias=p["bias"], mlp_bias=p["bias"])
        return out

    def rules(self, p: dict) -> list[Rule]:
        d, nh = p["n_embd"], p["n_head"]
        hd, nkv = d // nh, p.get("n_kv_head") or nh
        ffn = GPTConfig(**p).hidden_size
        kinds = ("weight", "bias") if p["bias"] else ("weight",)
        out = [Rule("wte.weight", ("embed_tokens.weight",))]
        for i in range(p["n_layer"]):
            a, m = f"layers.{i}.self_attn", f"layers.{i}.mlp"
            out.append(Rule(f"blocks.{i}.ln_1.weight", (f"layers.{i}.input_layernorm.weight",)))
            out.append(Rule(f"blocks.{i}.ln_2.weight",
                            (f"layers.{i}.post_attention_layernorm.weight",)))
            for k in kinds:
                out.append(Rule(f"blocks.{i}.attn.c_attn.{k}",
                                tuple(f"{a}.{x}_proj.{k}" for x in "qkv"),
                                sizes=(nh * hd, nkv * hd, nkv * hd)))
                out.append(Rule(f"blocks.{i}.attn.c_proj.{k}", (f"{a}.o_proj.{k}",)))
                # SwiGLU chunks c_fc's output as (gate, up): gate first.
                out.append(Rule(f"blocks.{i}.mlp.c_fc.{k}",
                                (f"{m}.gate_proj.{k}", f"{m}.up_proj.{k}"), sizes=(ffn, ffn)))
                out.append(Rule(f"blocks.{i}.mlp.c_proj.{k}", (f"{m}.down_proj.{k}",)))
        out.append(Rule("ln_f.weight", ("norm.weight",)))
        out.append(Rule("lm_head.weight", ("lm_head.weight",), body=False))
        return out


# BERT heads by the ``architectures`` entry of config.json.
BERT_CLASSIFIER, BERT_MLM, BERT_BASE = ("BertForSequenceClassification", "BertForMaskedLM",
                                        "BertModel")
_BERT_MLM_LIKE = (BERT_MLM, "BertForPreTraining")


class Bert:
    """``bert`` ⇄ Shoestring ``encoder`` (base model, sequence classifier or masked LM)."""

    model_types = ("bert",)
    prefixes = ("bert.", "")
    anchor = "embeddings.word_embeddings.weight"
    ignored = (re.compile(r"embeddings\.position_ids$"), re.compile(r"^cls\.seq_relationship\."),
               re.compile(r"^cls\.predictions\.decoder\.(weight|bias)$"))

    def architecture(self, hf: dict) -> Imported:
        d, n_layer, n_head, ffn, vocab, n_pos = _need(
            hf, "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "vocab_size", "max_position_embeddings")
        problems = []
        if hf.get("hidden_act", "gelu") != "gelu":
            problems.append(f"hidden_act {hf.get('hidden_act')!r} (BERT's is the exact 'gelu')")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            problems.append(f"position_embedding_type {hf.get('position_embedding_type')!r}")
        if hf.get("is_decoder") or hf.get("add_cross_attention"):
            problems.append("a decoder BERT (is_decoder / add_cross_attention)")
        head = (hf.get("architectures") or [BERT_BASE])[0]
        known = (BERT_CLASSIFIER, BERT_BASE, *_BERT_MLM_LIKE)
        if head not in known:
            problems.append(f"the {head} head (supported: {', '.join(known)})")
        class_names, num_classes = None, 0
        if head == BERT_CLASSIFIER:
            labels = hf.get("id2label") or {}
            num_classes = int(hf.get("num_labels") or len(labels) or 2)
            if num_classes < 2 or hf.get("problem_type") == "regression":
                problems.append("a regression head (num_labels 1)")
            if len(labels) == num_classes:
                class_names = [str(labels[k]) for k in sorted(labels, key=int)]
        _refuse("bert", problems)
        pad = hf.get("pad_token_id")
        params = {"n_layer": n_layer, "n_head": n_head, "n_embd": d, "block_size": n_pos,
                  "vocab_size": vocab, "intermediate_size": ffn,
                  "type_vocab_size": int(hf.get("type_vocab_size", 2)),
                  "num_classes": num_classes, "dropout": float(hf.get("hidden_dropout_prob", 0.1)),
                  "norm_eps": float(hf.get("layer_norm_eps", 1e-12)),
                  "pad_id": pad if isinstance(pad, int) and 0 <= pad < vocab else None,
                  "mlm": head in _BERT_MLM_LIKE}
        return Imported("bert", {"family": "encoder", "name": "hf-bert", "params": params},
                        class_names)

    def hf_config(self, arch: Architecture) -> dict:
        p = arch["params"]
        head = BERT_MLM if p.get("mlm") else BERT_CLASSIFIER if p["num_classes"] else BERT_BASE
        out = {"architectures": [head], "model_type": "bert", "hidden_size": p["n_embd"],
               "num_hidden_layers": p["n_layer"], "num_attention_heads": p["n_head"],
               "intermediate_size": p["intermediate_size"], "hidden_act": "gelu",
               "vocab_size": p["vocab_size"], "max_position_embeddings": p["block_size"],
               "type_vocab_size": p["type_vocab_size"], "layer_norm_eps": p["norm_eps"],
               "hidden_dropout_prob": p["dropout"], "attention_probs_dropout_prob": p["dropout"],
               "pad_token_id": p.get("pad_id"), "position_embedding_type": "absolute",
               "tie_word_embeddings": True}
        if p["num_classes"]:
            out["num_labels"] = p["num_classes"]
        return out

    def rules(self, p: dict) -> list[Rule]:
        d = p["n_embd"]
        out = [Rule(f"{x}.weight", (f"embeddings.{x}.weight",))
               for x in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
        out += [Rule(f"embed_norm.{k}", (f"embeddings.LayerNorm.{k}",)) for k in ("weight", "bias")]
        for i in range(p["n_layer"]):
            h = f"encoder.layer.{i}"
            for k in ("weight", "bias"):
                out.append(Rule(f"layers.{i}.qkv.{k}",
                                tuple(f"{h}.attention.self.{x}.{k}" for x in
                                      ("query", "key", "value")), sizes=(d, d, d)))
                for ours, theirs in (("attn_out", "attention.output.dense"),
                                     ("attn_norm", "attention.output.LayerNorm"),
                                     ("ffn_in", "intermediate.dense"),
                                     ("ffn_out", "output.dense"),
                                     ("ffn_norm", "output.LayerNorm")):
                    out.append(Rule(f"layers.{i}.{ours}.{k}", (f"{h}.{theirs}.{k}",)))
        for k in ("weight", "bias"):
            out.append(Rule(f"pooler.{k}", (f"pooler.dense.{k}",)))
            out.append(Rule(f"classifier.{k}", (f"classifier.{k}",), body=False))
            out.append(Rule(f"mlm_head.dense.{k}", (f"cls.predictions.transform.dense.{k}",),
                            body=False))
            out.append(Rule(f"mlm_head.norm.{k}", (f"cls.predictions.transform.LayerNorm.{k}",),
                            body=False))
        out.append(Rule("mlm_head.bias", ("cls.predictions.bias",), body=False))
        return out


FAMILIES: dict[str, GPT2 | Llama | Bert] = {}
for _family in (GPT2(), Llama(), Bert()):
    for _type in _family.model_types:
        FAMILIES[_type] = _family
SUPPORTED_MODEL_TYPES = tuple(sorted(FAMILIES))


def family_of_model_type(model_type: Any) -> GPT2 | Llama | Bert:
    """The family that reads ``config.json`` of this ``model_type``."""
    if model_type not in FAMILIES:
        raise ShoestringError(f"model_type {model_type!r} is not supported",
                              hint=f"Shoestring imports model_type "
                              f"{', '.join(SUPPORTED_MODEL_TYPES)}; other architectures need "
                              "their own mapping onto Shoestring's modules")
    return FAMILIES[model_type]


def family_for_architecture(arch: Architecture) -> GPT2 | Llama | Bert:
    """The Hugging Face family a Shoestring architecture exports to (or a clear refusal)."""
    family, p = arch.get("family"), arch.get("params") or {}
    if family == "encoder":
        return FAMILIES["bert"]
    if family != "gpt":
        raise ShoestringError(f"a {family!r} model has no Hugging Face checkpoint format",
                              hint="export --format hf takes gpt and encoder runs")
    gpt2 = (p.get("pos"), p.get("norm"), p.get("mlp")) == ("learned", "layernorm", "gelu")
    llama = (p.get("pos"), p.get("norm"), p.get("mlp")) == ("rope", "rmsnorm", "swiglu")
    if gpt2 and p.get("bias") and p.get("n_kv_head") in (None, p.get("n_head")):
        return FAMILIES["gpt2"]
    if llama:
        return FAMILIES["llama"]
    raise ShoestringError(
        f"this gpt model (pos={p.get('pos')}, norm={p.get('norm')}, mlp={p.get('mlp')}, "
        f"bias={p.get('bias')}, n_kv_head={p.get('n_kv_head')}) matches no Hugging Face family",
        hint="GPT-2 is learned positions + layernorm + gelu + biases without GQA; Llama is "
        "rope + rmsnorm + swiglu")
