import json

import pytest
import torch

from shoestring.train.checkpoint import (
    MANIFEST,
    TrainingState,
    encode_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)


def make(step: int):
    torch.manual_seed(step)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = TrainingState(epoch=1, step_in_epoch=step, global_step=step, elapsed_seconds=1.5)
    return model, opt, encode_checkpoint(model.state_dict(), opt.state_dict(), state,
                                         torch.get_rng_state())


def test_roundtrip_restores_everything(tmp_path):
    model, opt, payload = make(7)
    rng_at_save = torch.get_rng_state()
    save_checkpoint(tmp_path, payload, 7)
    ckpt, warnings = load_latest_checkpoint(tmp_path)
    assert warnings == [] and ckpt.state.global_step == 7 and ckpt.state.elapsed_seconds == 1.5
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt.model_state[k], v)
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(ckpt.optimizer_state)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["lr"] == 0.1
    for pid in s1["state"]:
        for key in s1["state"][pid]:
            assert torch.equal(s1["state"][pid][key], s2["state"][pid][key])
    assert torch.equal(ckpt.rng_state, rng_at_save)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_latest_falls_back_with_warning(tmp_path, damage):
    for step in (10, 20):
        save_checkpoint(tmp_path, make(step)[2], step)
    latest = tmp_path / "ckpt-0000000020.safetensors"
    data = bytearray(latest.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        latest.write_bytes(bytes(data))
    elif damage == "truncate":
        latest.write_bytes(bytes(data[: len(data) // 3]))
    else:
        latest.unlink()
    ckpt, warnings = load_latest_checkpoint(tmp_path)
    assert ckpt.state.global_step == 10
    assert len(warnings) == 1 and "ckpt-0000000020" in warnings[0]


def test_keeps_only_recent_checkpoints(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, make(step)[2], step, keep=3)
    files = sorted(p.name for p in tmp_path.glob("ckpt-*"))
    assert files == [f"ckpt-{s:010d}.safetensors" for s in (3, 4, 5)]
    assert [e["step"] for e in json.loads((tmp_path / MANIFEST).read_text())["checkpoints"]] == \
        [3, 4, 5]


def test_lost_manifest_still_finds_files(tmp_path):
    save_checkpoint(tmp_path, make(3)[2], 3)
    (tmp_path / MANIFEST).unlink()
    ckpt, _ = load_latest_checkpoint(tmp_path)
    assert ckpt.state.global_step == 3


def test_nothing_usable(tmp_path):
    assert load_latest_checkpoint(tmp_path) == (None, [])


def test_nested_optimizer_state_round_trips(tmp_path):
    """bitsandbytes keeps its 8-bit moments in a dict under one key of a parameter's state."""
    state = {"state": {0: {"step": 3, "__bnb_optimizer_quant_state__": {
        "state1": torch.arange(4, dtype=torch.uint8), "qmap1": torch.ones(2)}},
        "layer.weight": {"exp_avg": torch.zeros(2)}},
        "param_groups": [{"lr": 0.1, "params": [0, "layer.weight"]}]}
    save_checkpoint(tmp_path, encode_checkpoint({}, state, TrainingState(global_step=1),
                                                torch.get_rng_state()), 1)
    ckpt, _ = load_latest_checkpoint(tmp_path)
    restored = ckpt.optimizer_state["state"]
    inner = restored[0]["__bnb_optimizer_quant_state__"]
    assert restored[0]["step"] == 3 and torch.equal(inner["state1"], torch.arange(4,
                                                                               dtype=torch.uint8))
    assert torch.equal(inner["qmap1"], torch.ones(2))
    assert torch.equal(restored["layer.weight"]["exp_avg"], torch.zeros(2))


def test_background_writes_hold_the_state_at_the_call_and_report_failures(tmp_path):
    """A single-process run writes checkpoints on a worker thread: each holds the state of
    the moment it was taken (training goes on changing the weights meanwhile), and a
    failed write is raised by wait()."""
    from shoestring.models.run_folder import RunFolder
    from shoestring.train.distributed import DistInfo
    from shoestring.train.session import Checkpointer

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    folder = RunFolder(tmp_path / "run")
    ckpt = Checkpointer(folder, model, opt, DistInfo(), "ddp")
    assert ckpt.background
    taken = {}
    for step in (1, 2):
        with torch.no_grad():
            model.weight.fill_(float(step))
        ckpt(TrainingState(global_step=step))
        taken[step] = model.weight.detach().clone()
        with torch.no_grad():
            model.weight.fill_(-1.0)  # changed while the write may still be going on
    ckpt.wait()
    loaded, warnings = load_latest_checkpoint(folder.checkpoints)
    assert not warnings and loaded.state.global_step == 2
    assert torch.equal(loaded.model_state["weight"], taken[2])

    blocked = RunFolder(tmp_path / "blocked")
    blocked.path.mkdir()
    blocked.checkpoints.write_text("a file where the checkpoint folder should be")
    failing = Checkpointer(blocked, model, opt, DistInfo(), "ddp")
    failing(TrainingState(global_step=1))  # returns at once; the write fails behind it
    with pytest.raises(OSError):
        failing.wait()
    failing.wait()  # reported once
