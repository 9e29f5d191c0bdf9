"""LoRA: only adapters train, merged equals unmerged, clear errors for bad targets."""

from __future__ import annotations

import pytest
import torch

from shoestring.errors import ShoestringError
from shoestring.models.encoder import Encoder, EncoderConfig
from shoestring.models.gpt import GPT, GPTConfig
from shoestring.models.lora import (
    LoRASpec,
    adapter_state,
    add_lora,
    merge_lora,
    resolve_targets,
    trainable_parameters,
)

LLAMA = {"bias": False, "norm": "rmsnorm", "mlp": "swiglu", "pos": "rope", "tie_embeddings": False}


def llama() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=4, n_kv_head=2, n_embd=32, block_size=16,
                         vocab_size=41, intermediate_size=48, **LLAMA))


def _train(model, steps: int = 5, seed: int = 1):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randint(0, 41, (4, 16), generator=g)
        _, loss = model(x, torch.roll(x, -1, 1))
        loss.backward()
        opt.step()
        opt.zero_grad()


def test_lora_trains_only_the_adapters():
    model = llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    add_lora(model, LoRASpec(rank=4, alpha=8, targets=("q", "v", "down")))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    # q (4 heads of 8) and v (2 KV heads of 8) in c_attn, down (48 → 32) in mlp.c_proj:
    # r·(in + out) each.
    per_layer = 4 * (32 + 32) + 4 * (32 + 16) + 4 * (48 + 32)
    assert trainable_parameters(model) == 2 * per_layer
    _train(model)
    after = model.state_dict()
    for k, v in before.items():
        torch.testing.assert_close(after[k], v, rtol=0, atol=0, msg=k)  # base untouched
    assert any(after[k].abs().sum() > 0 for k in after if ".lora_b." in k)  # adapters moved


def test_merged_model_gives_the_unmerged_outputs():
    model = llama()
    add_lora(model, LoRASpec(rank=4, alpha=16, targets=("all",)))
    _train(model)
    model.eval()
    x = torch.randint(0, 41, (2, 16), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        unmerged = model(x)[0]
        merged = merge_lora(model)(x)[0]
    assert not any(".lora_" in k for k in model.state_dict())
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)
    # The merged state is the plain architecture's: it loads into a fresh model.
    fresh = llama()
    fresh.load_state_dict(model.state_dict())


def test_a_base_state_dict_loads_into_the_adapted_model():
    base = llama()
    adapted = add_lora(llama(), LoRASpec(targets=("q", "k", "v", "o")))
    missing, unexpected = adapted.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(".lora_" in k for k in missing)


def test_adapter_state_holds_adapters_and_train_also_only():
    model = Encoder(EncoderConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=30,
                                  intermediate_size=32, num_classes=3))
    add_lora(model, LoRASpec(rank=2, targets=("query", "value")), train_also=("classifier",))
    state = adapter_state(model)
    assert set(state) == {"layers.0.qkv.lora_a.q", "layers.0.qkv.lora_b.q",
                          "layers.0.qkv.lora_a.v", "layers.0.qkv.lora_b.v",
                          "classifier.weight", "classifier.bias"}
    assert model.classifier.weight.requires_grad and not model.pooler.weight.requires_grad


def test_lora_starts_equal_to_its_base():
    base = llama().eval()
    adapted = add_lora(llama(), LoRASpec(rank=8, targets=("all",))).eval()
    x = torch.randint(0, 41, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(adapted(x)[0], base(x)[0])


def test_bad_targets_list_the_real_ones():
    with pytest.raises(ShoestringError, match="'attn', 'wq' do not exist in this GPT") as err:
        resolve_targets(llama(), ["q", "wq", "attn"])
    assert "q, k, v, o, gate, up, down" in err.value.hint
    gpt2 = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11))
    with pytest.raises(ShoestringError, match="'gate' does not exist") as err:
        resolve_targets(gpt2, ["gate"])
    assert "q, k, v, o, fc, proj" in err.value.hint
    assert resolve_targets(gpt2, ["q_proj", "c_fc"]) == {"q", "fc"}


def test_bad_lora_settings_are_reported_together():
    with pytest.raises(ShoestringError, match="rank must be at least 1.*dropout"):
        LoRASpec(rank=0, dropout=1.5)
