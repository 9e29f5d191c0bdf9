"""GPT: published parameter counts, causality, Llama-style options, saving."""

from __future__ import annotations

import pytest
import torch
from cards import card_for

from shoestring.errors import ConfigError, ShoestringError
from shoestring.models.gpt import GPT, GPTConfig
from shoestring.models.layers import apply_rope, rope_tables
from shoestring.models.presets import GPT_PRESETS
from shoestring.models.run_folder import load_run, save_run

# Compares floating-point results: run again on AVX2 kernels by `make test`.
pytestmark = pytest.mark.numerics


def tiny(**kw) -> GPTConfig:
    base = {"n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 16, "vocab_size": 37}
    base.update(kw)
    return GPTConfig(**base)


LLAMA = {"bias": False, "norm": "rmsnorm", "mlp": "swiglu", "pos": "rope", "tie_embeddings": False}


def meta_params(cfg: GPTConfig) -> int:
    with torch.device("meta"):
        return GPT(cfg).num_params()


def test_gpt2_124m_has_its_published_parameter_count():
    # HF gpt2: 124,439,808 parameters (tied head, learned positions, biases).
    assert meta_params(GPT_PRESETS["gpt2-124m"]) == 124_439_808


def test_gpt2_350m_matches_gpt2_medium():
    # HF gpt2-medium: 354,823,168 parameters.
    assert meta_params(GPT_PRESETS["gpt2-350m"]) == 354_823_168


def test_llama_3_8b_has_its_published_parameter_count():
    assert meta_params(GPT_PRESETS["llama-3-8b"]) == 8_030_261_248


def test_num_params_non_embedding_drops_positions_only():
    m = GPT(tiny())
    assert m.num_params() - m.num_params(non_embedding=True) == 16 * 32
    assert GPT(tiny(pos="rope")).num_params(non_embedding=True) == \
        GPT(tiny(pos="rope")).num_params()


@pytest.mark.parametrize("options", [{}, LLAMA, {**LLAMA, "n_kv_head": 2}, {"n_kv_head": 1}])
def test_future_tokens_do_not_change_past_logits(options):
    torch.manual_seed(0)
    model = GPT(tiny(**options)).eval()
    idx = torch.randint(0, 37, (2, 12))
    changed = idx.clone()
    changed[:, 7:] = torch.randint(0, 37, (2, 5))
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_llama_options_build_the_expected_shapes():
    cfg = tiny(n_kv_head=2, **LLAMA)
    m = GPT(cfg)
    attn = m.blocks[0].attn
    # q: 4 heads of 8, k and v: 2 heads of 8 each.
    assert attn.c_attn.weight.shape == (4 * 8 + 2 * 2 * 8, 32)
    assert attn.c_attn.bias is None
    assert isinstance(m.blocks[0].ln_1, torch.nn.RMSNorm)
    # SwiGLU default width: 8/3·32 → 85, rounded up to a multiple of 256.
    assert m.blocks[0].mlp.c_fc.weight.shape == (2 * 256, 32)
    assert m.wpe is None and m.lm_head is not None
    logits, loss = m(torch.randint(0, 37, (3, 16)), torch.randint(0, 37, (3, 16)))
    assert logits.shape == (3, 16, 37) and loss.ndim == 0


def test_grouped_query_attention_equals_repeated_key_value_heads():
    torch.manual_seed(0)
    gqa = GPT(tiny(n_kv_head=2, bias=False)).eval()
    mha = GPT(tiny(bias=False)).eval()
    state = gqa.state_dict()
    hd = 8
    for i in range(2):
        key = f"blocks.{i}.attn.c_attn.weight"
        q, k, v = state[key].split((4 * hd, 2 * hd, 2 * hd))
        # Each KV head serves two consecutive query heads.
        rep = lambda t: t.view(2, hd, 32).repeat_interleave(2, dim=0).reshape(4 * hd, 32)
        state[key] = torch.cat((q, rep(k), rep(v)))
    mha.load_state_dict(state)
    idx = torch.randint(0, 37, (2, 10))
    torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], rtol=1e-5, atol=1e-5)


def test_rope_scores_depend_on_relative_position_only():
    torch.manual_seed(0)
    cos, sin = rope_tables(head_dim=8, length=32, theta=10000.0)
    q, k = torch.randn(8), torch.randn(8)

    def score(m: int, n: int) -> torch.Tensor:
        # Place q at position m and k at position n, rotate, take the dot product.
        qs = torch.zeros(1, 1, 32, 8)
        ks = torch.zeros(1, 1, 32, 8)
        qs[0, 0, m], ks[0, 0, n] = q, k
        return apply_rope(qs, cos, sin)[0, 0, m] @ apply_rope(ks, cos, sin)[0, 0, n]

    torch.testing.assert_close(score(5, 2), score(20, 17))
    assert not torch.allclose(score(5, 2), score(5, 4))
    torch.testing.assert_close(score(3, 3), q @ k)  # zero offset: no rotation


def test_loss_ignores_minus_one_targets_and_matches_cross_entropy():
    torch.manual_seed(0)
    m = GPT(tiny()).eval()
    idx = torch.randint(0, 37, (2, 8))
    targets = torch.randint(0, 37, (2, 8))
    targets[0, :4] = -1
    logits, loss = m(idx, targets)
    keep = targets.view(-1) != -1
    expected = torch.nn.functional.cross_entropy(logits.view(-1, 37)[keep], targets.view(-1)[keep])
    torch.testing.assert_close(loss, expected)


def test_last_only_logits_equal_the_last_position_of_the_full_pass():
    m = GPT(tiny()).eval()
    idx = torch.randint(0, 37, (2, 9))
    full, _ = m(idx)
    last, _ = m(idx, last_only=True)
    torch.testing.assert_close(last[:, 0], full[:, -1])


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    a = GPT(tiny(dropout=0.0))
    b = GPT(tiny(dropout=0.0))
    b.load_state_dict(a.state_dict())
    b.set_activation_checkpointing(True)
    idx, tgt = torch.randint(0, 37, (2, 16)), torch.randint(0, 37, (2, 16))
    a(idx, tgt)[1].backward()
    b(idx, tgt)[1].backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)
    assert b.activation_checkpointing and not a.activation_checkpointing


def test_nanogpt_initialisation_scales_residual_projections():
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=8, n_head=4, n_embd=256, block_size=8, vocab_size=512))
    proj = m.blocks[0].attn.c_proj.weight.std().item()
    fc = m.blocks[0].mlp.c_fc.weight.std().item()
    assert fc == pytest.approx(0.02, rel=0.05)
    assert proj == pytest.approx(0.02 / 4.0, rel=0.05)  # 1/sqrt(2·8)
    assert m.blocks[0].attn.c_attn.bias.abs().sum() == 0


def test_too_long_input_is_a_clear_error():
    with pytest.raises(ShoestringError, match="longer than block_size 16"):
        GPT(tiny())(torch.zeros(1, 17, dtype=torch.long))


def test_bad_shapes_are_reported_together():
    with pytest.raises(ConfigError) as err:
        GPTConfig(n_head=5, n_embd=32, n_kv_head=3, norm="batchnorm", dropout=1.5)
    assert len(err.value.problems) == 4
    assert "n_kv_head (3) must divide n_head (5)" in str(err.value)


def test_rope_needs_an_even_head_size():
    with pytest.raises(ConfigError, match="even head size"):
        tiny(n_head=32, pos="rope")


def test_optim_groups_decay_matrices_only():
    m = GPT(tiny())
    decay, rest = m.optim_groups(0.1)
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in rest["params"]) and rest["weight_decay"] == 0.0
    assert len(decay["params"]) + len(rest["params"]) == len(list(m.parameters()))


@pytest.mark.parametrize("options", [{}, LLAMA])
def test_tied_and_untied_models_save_and_load_through_safetensors(tmp_path, options):
    from shoestring.models.registry import DataShape, architecture_for, build_model

    class Cfg:
        name = "gpt"
        dropout = 0.0
        n_layer, n_head, n_embd, block_size = 1, 2, 16, 8
        bias, norm, mlp, pos = (options.get(k) for k in ("bias", "norm", "mlp", "pos"))
        tie_embeddings = options.get("tie_embeddings")

    arch = architecture_for(Cfg(), DataShape((8,), 11))
    model = build_model(arch)
    save_run(tmp_path, model, card_for(arch, task="language_modeling"))
    run = load_run(tmp_path)
    idx = torch.randint(0, 11, (1, 8))
    torch.testing.assert_close(run.model(idx)[0], model.eval()(idx)[0])
    assert run.card.architecture.params["tie_embeddings"] == (not options)



def test_key_bias_has_an_exactly_zero_gradient_without_rope():
    # Softmax ignores a constant added to a row of scores, and q·b_k is such a
    # constant: the key bias cannot change the output, so it must not move
    # (its computed gradient would be rounding noise that differs per CPU).
    torch.manual_seed(0)
    m = GPT(tiny(n_kv_head=2))
    idx, tgt = torch.randint(0, 37, (2, 16)), torch.randint(0, 37, (2, 16))
    m(idx, tgt)[1].backward()
    g = m.blocks[0].attn.c_attn.bias.grad
    q, k = 32, 16
    assert torch.equal(g[q:q + k], torch.zeros(k))
    assert g[:q].abs().sum() > 0 and g[q + k:].abs().sum() > 0
    with torch.no_grad():
        before = m(idx)[0]
        m.blocks[0].attn.c_attn.bias[q:q + k] += 5.0
        torch.testing.assert_close(m(idx)[0], before, atol=1e-4, rtol=1e-4)


def test_key_bias_trains_under_rope_where_it_matters():
    torch.manual_seed(0)
    m = GPT(tiny(pos="rope"))
    idx, tgt = torch.randint(0, 37, (2, 16)), torch.randint(0, 37, (2, 16))
    m(idx, tgt)[1].backward()
    assert m.blocks[0].attn.c_attn.bias.grad[32:64].abs().sum() > 0
