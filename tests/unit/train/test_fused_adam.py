"""FusedAdam equals torch.optim.Adam/AdamW(fused=True) bit for bit, state dicts included."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from shoestring.train.fused_adam import FusedAdam


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))


def _train(model, opt, steps: int, start: int = 0) -> None:
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen))
               for _ in range(start + steps)]
    for k, (x, y) in enumerate(batches[start:]):
        for g in opt.param_groups:
            g["lr"] = 1e-2 / (1 + k + start)  # the engine sets lr every step
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("decoupled", [False, True])
def test_updates_and_state_equal_torch_fused(decoupled):
    ref_model, our_model = _model(), _model()
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    ref = cls(ref_model.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    ours = FusedAdam(our_model.parameters(), lr=1e-2, weight_decay=0.1,
                     decoupled_weight_decay=decoupled)
    _train(ref_model, ref, 5)
    _train(our_model, ours, 5)
    for a, b in zip(ref_model.parameters(), our_model.parameters()):
        assert torch.equal(a, b)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert ref_sd["param_groups"] == our_sd["param_groups"]
    for i in ref_sd["state"]:
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(ref_sd["state"][i][k], our_sd["state"][i][k])


def test_state_moves_between_the_two_and_training_continues_identically():
    ref_model, our_model = _model(), _model()
    ref = torch.optim.Adam(ref_model.parameters(), lr=1e-2, fused=True)
    _train(ref_model, ref, 3)
    our_model.load_state_dict(ref_model.state_dict())
    ours = FusedAdam(our_model.parameters(), lr=1e-2)
    ours.load_state_dict(ref.state_dict())
    _train(ref_model, ref, 3, start=3)
    _train(our_model, ours, 3, start=3)
    for a, b in zip(ref_model.parameters(), our_model.parameters()):
        assert torch.equal(a, b)
    back = torch.optim.Adam(_model().parameters(), lr=1e-2, fused=True)
    back.load_state_dict(ours.state_dict())  # and the other way round


def test_a_mismatched_state_is_refused():
    ours = FusedAdam(_model().parameters(), lr=1e-2)
    with pytest.raises(ValueError, match="parameter groups"):
        ours.load_state_dict({"state": {}, "param_groups": [{"params": [0]}]})


def test_training_with_it_never_imports_dynamo():
    code = ("import sys, torch; from shoestring.train.fused_adam import FusedAdam\n"
            "m = torch.nn.Linear(3, 1); o = FusedAdam(m.parameters(), lr=0.1)\n"
            "m(torch.ones(2, 3)).sum().backward(); o.step(); o.zero_grad(); o.state_dict()\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _partial_steps(model, opt, drop: dict[int, int]) -> None:
    """Steps where a parameter sometimes has no gradient (it is not stepped then)."""
    gen = torch.Generator().manual_seed(2)
    params = list(model.parameters())
    for k in range(6):
        x, y = torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if k in drop:
            params[drop[k]].grad = None
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_shared_step_counters_count_only_what_steps():
    """Counters shared for speed still count each parameter's own steps, across a save and
    load, with several parameter groups."""
    ref_model, our_model = _model(), _model()

    def groups(model):
        p = list(model.parameters())
        return [{"params": p[:2]}, {"params": p[2:], "lr": 5e-3}]

    ref = torch.optim.Adam(groups(ref_model), lr=1e-2, fused=True)
    ours = FusedAdam(list(our_model.parameters()), lr=1e-2)
    ours.param_groups = [{**ours.param_groups[0], "params": g["params"],
                          "lr": g.get("lr", 1e-2)} for g in groups(our_model)]
    drops = {1: 0, 2: 3, 4: 1}
    _partial_steps(ref_model, ref, drops)
    _partial_steps(our_model, ours, drops)
    for a, b in zip(ref_model.parameters(), our_model.parameters()):
        assert torch.equal(a, b)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert [float(s["step"]) for s in our_sd["state"].values()] == [5.0, 5.0, 6.0, 5.0]
    for i in ref_sd["state"]:
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(ref_sd["state"][i][k], our_sd["state"][i][k])
    ours.load_state_dict(ref_sd)  # equal counters within a group share a tensor again
    _train(ref_model, ref, 3)
    _train(our_model, ours, 3)
    for a, b in zip(ref_model.parameters(), our_model.parameters()):
        assert torch.equal(a, b)
    assert [float(s["step"]) for s in ours.state_dict()["state"].values()] == \
        [float(s["step"]) for s in ref.state_dict()["state"].values()]
