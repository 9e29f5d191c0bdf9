"""Pruned and ONNX modules as run folders: saved, rebuilt by their transforms, equal outputs."""

from __future__ import annotations

import pytest
import torch
from cards import card_for

from shoestring.compress import onnx_quant as oq
from shoestring.compress.prune import prune_module
from shoestring.errors import ShoestringError
from shoestring.models.card import TransformRecord
from shoestring.models.onnx_module import OnnxModule
from shoestring.models.pruned import changed_shapes
from shoestring.models.registry import build_model
from shoestring.models.run_folder import load_run, save_run

MLP = {"family": "mlp", "name": "mlp", "params": {
    "in_features": 48, "hidden": [64, 32], "out_features": 3, "dropout": 0.0,
    "activation": "relu"}}


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return build_model(MLP).eval()


@pytest.fixture(scope="module")
def graph(mlp):
    return oq.export_onnx(mlp, torch.randn(2, 48), tokens=False)


def test_pruning_removes_neurons_and_the_run_folder_rebuilds_them(mlp, tmp_path):
    pruned = prune_module(mlp, 0.5, torch.randn(2, 48), "mlp")
    assert [layer.out_features for layer in pruned.modules()
            if isinstance(layer, torch.nn.Linear)] == [32, 16, 3]
    assert sum(p.numel() for p in pruned.parameters()) < \
        0.5 * sum(p.numel() for p in mlp.parameters())
    shapes = changed_shapes(mlp.state_dict(), pruned.state_dict())
    card = card_for(MLP).model_copy(update={"transforms": [
        TransformRecord(kind="prune", config={"shapes": shapes})]})
    save_run(tmp_path / "run", pruned, card)
    x = torch.randn(5, 48)
    torch.testing.assert_close(load_run(tmp_path / "run").model(x), pruned(x))
    # Without the transform the smaller weights do not fit the card's architecture.
    save_run(tmp_path / "bare", pruned, card_for(MLP))
    with pytest.raises(ShoestringError, match="do not fit"):
        load_run(tmp_path / "bare")


def test_an_onnx_graph_round_trips_through_the_run_folder(mlp, graph, tmp_path):
    module = OnnxModule.from_bytes(graph, family="mlp")
    x = torch.randn(7, 48)
    torch.testing.assert_close(module(x), mlp(x), atol=1e-5, rtol=1e-4)
    card = card_for(MLP).model_copy(update={"transforms": [
        TransformRecord(kind="onnx", config={"nbytes": len(graph), "family": "mlp"})]})
    save_run(tmp_path / "run", module, card)
    run = load_run(tmp_path / "run")
    assert isinstance(run.model, OnnxModule) and run.model.onnx_bytes() == graph
    torch.testing.assert_close(run.model(x), mlp(x), atol=1e-5, rtol=1e-4)


def test_int8_graphs_are_smaller_and_close(mlp, graph):
    x = torch.randn(64, 48)
    dyn = oq.quantize_dynamic(graph)
    static = oq.quantize_static(graph, [torch.randn(16, 48) for _ in range(4)])
    for data in (dyn, static):
        assert len(data) < len(graph)
        out = OnnxModule.from_bytes(data, family="mlp")(x)
        assert (out - mlp(x)).abs().max() < 0.1 * mlp(x).abs().max()


def test_excluded_layers_stay_float(mlp, graph):
    layers = oq.quantizable_layers(graph)
    assert [layer.module for layer in layers] == ["net.1", "net.3", "net.5"]
    import onnx

    def int8_matmuls(data):
        return sum(n.op_type == "MatMulInteger" for n in onnx.load_from_string(data).graph.node)

    only_last = oq.quantize_dynamic(graph, exclude=[layer.node for layer in layers[:2]])
    assert int8_matmuls(oq.quantize_dynamic(graph)) == 3 and int8_matmuls(only_last) == 1


def test_the_session_follows_the_torch_thread_count(graph):
    module = OnnxModule.from_bytes(graph, family="mlp")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        first = module.session()
        assert module.session() is first
        torch.set_num_threads(2)
        assert module.session() is not first
    finally:
        torch.set_num_threads(before)


def test_a_gpt_loses_mlp_neurons_only_and_rebuilds_from_its_card():
    from shoestring.models.gpt import GPT, GPTConfig
    from shoestring.models.pruned import prune

    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=20)
    torch.manual_seed(0)
    gpt = GPT(cfg).eval()
    pruned = prune_module(gpt, 0.5, torch.randint(0, 20, (2, 16)), "gpt")
    shapes = changed_shapes(gpt.state_dict(), pruned.state_dict())
    assert shapes and all(".mlp." in name for name in shapes)
    assert shapes["blocks.0.mlp.c_fc.weight"] == [64, 32]  # 128 hidden neurons → 64
    rebuilt = prune(GPT(cfg), {"shapes": shapes})
    rebuilt.load_state_dict(pruned.state_dict())
    idx = torch.randint(0, 20, (1, 10))
    torch.testing.assert_close(rebuilt.eval()(idx)[0], pruned(idx)[0])
