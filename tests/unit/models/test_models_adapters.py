"""Adapter run folders: saved small, rebuilt over their base by load_run, clear when it is gone."""

from __future__ import annotations

import sys

import pytest
import torch
from cards import card_for

from shoestring.errors import ShoestringError
from shoestring.models.adapters import KIND, apply_lora_transform, lora_config
from shoestring.models.card import Lineage, TransformRecord
from shoestring.models.lora import LoRASpec, add_lora, lora_layers
from shoestring.models.registry import build_model
from shoestring.models.run_folder import load_run, save_run

ARCH = {"family": "gpt", "params": {
    "n_layer": 2, "n_head": 4, "n_kv_head": 2, "n_embd": 64, "block_size": 16,
    "vocab_size": 50, "intermediate_size": 128, "bias": False, "norm": "rmsnorm",
    "mlp": "swiglu", "pos": "rope", "tie_embeddings": False}}


@pytest.fixture
def base_dir(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "base"
    save_run(folder, build_model(ARCH), card_for(ARCH, task="language_modeling"))
    return folder


def _train(model, steps=4):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randint(0, 50, (4, 16), generator=g)
        model(x, torch.roll(x, -1, 1))[1].backward()
        opt.step()
        opt.zero_grad()


def test_an_adapter_run_is_saved_small_and_loads_over_its_base(base_dir, tmp_path):
    spec = LoRASpec(rank=2, alpha=4, targets=("q", "v"))
    config = lora_config(spec, base=str(base_dir))
    torch.manual_seed(5)
    model = apply_lora_transform(build_model(ARCH), config)
    base = load_run(base_dir).model
    torch.testing.assert_close(model.blocks[0].attn.c_attn.weight,
                               base.blocks[0].attn.c_attn.weight)
    _train(model)
    card = card_for(ARCH, task="language_modeling",
                    lineage=Lineage(stage="finetune", parent_dir=str(base_dir)),
                    transforms=[TransformRecord(kind=KIND, config=config)])
    folder = save_run(tmp_path / "adapter", model, card)
    saved = load_run(folder.path)  # card → module → lora transform (loads the base) → adapters
    assert all(".lora_" in k for k in saved.model.state_dict())
    assert folder.weights.stat().st_size < (base_dir / "model.safetensors").stat().st_size / 10
    x = torch.randint(0, 50, (2, 16))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(saved.model(x)[0], model(x)[0])
        assert (saved.model(x)[0] - base(x)[0]).abs().max() > 1e-4  # the adapters matter


def test_a_missing_base_is_named(base_dir, tmp_path):
    config = lora_config(LoRASpec(rank=2), base=str(tmp_path / "gone"))
    with pytest.raises(ShoestringError, match="gone.*is gone") as err:
        apply_lora_transform(build_model(ARCH), config)
    assert "--merge" in err.value.hint


def test_qlora_without_bitsandbytes_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as if absent
    with pytest.raises(ShoestringError, match="needs bitsandbytes' NF4 kernels") as err:
        add_lora(build_model(ARCH), LoRASpec(rank=2), quantize=True)
    assert "--finetune lora" in err.value.hint


def test_qlora_stores_the_frozen_base_in_4_bits_where_bitsandbytes_runs():
    pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    plain = build_model(ARCH).eval()
    model = build_model(ARCH)
    model.load_state_dict(plain.state_dict())
    add_lora(model, LoRASpec(rank=2, targets=("q", "v")), quantize=True)
    layers = lora_layers(model)
    assert len(layers) == 2 * 4 and all(layer.quantized for _, layer in layers)
    assert all(layer.weight.dtype == torch.uint8 for _, layer in layers)
    # The 4-bit model computes with the dequantized NF4 weights: put those in the plain
    # model and the outputs agree; they differ from the fp32 base by NF4's rounding only.
    with torch.no_grad():
        for name, layer in layers:
            plain.get_submodule(name).weight.copy_(layer.base_weight())
    x = torch.randint(0, 50, (2, 16))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], plain(x)[0], rtol=1e-4, atol=1e-5)
    model.train()
    _train(model, steps=2)
    assert all(p.grad is None for p in model.parameters())  # stepped and cleared
    assert all(".lora_" in n for n, p in model.named_parameters() if p.requires_grad)
