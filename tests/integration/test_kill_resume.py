"""kill -9 at arbitrary moments, then --resume: weights identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ARGS = ["train", "--data", "digits", "--epochs", "12", "--batch-size", "8", "--seed", "3",
        "--checkpoint-every", "25", "--dropout", "0.1", "--model", "mlp", "--hidden", "64,32",
        # One thread: tiny steps under CPU contention are otherwise dominated by
        # OpenMP threads waiting for each other.
        "--threads", "1"]


def shoestring(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "SHOESTRING_DB": f"sqlite:///{tmp_path / 'ledger.db'}"}
    return subprocess.Popen([sys.executable, "-m", "shoestring", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def checkpoints_in(manifest: Path) -> int:
    try:
        return len(json.loads(manifest.read_text())["checkpoints"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_for(manifest: Path, at_least: int = 1, timeout: float = 300.0) -> None:
    """Until the run has written ``at_least`` checkpoints (generous: CI may be loaded)."""
    deadline = time.monotonic() + timeout
    while checkpoints_in(manifest) < at_least:
        assert time.monotonic() < deadline, f"{manifest} never listed {at_least} checkpoints"
        time.sleep(0.02)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def assert_identical(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_sigkill_then_resume_gives_identical_weights(tmp_path):
    ref = shoestring(tmp_path, *ARGS, "--out", str(tmp_path / "ref"))
    out = tmp_path / "victim"
    rng = random.Random(1234)
    proc = shoestring(tmp_path, *ARGS, "--out", str(out))
    kills = 0
    for _ in range(3):
        wait_for(out / "checkpoints" / "manifest.json")
        time.sleep(rng.uniform(0.05, 0.6))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        proc = shoestring(tmp_path, *ARGS, "--out", str(out), "--resume")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert kills >= 1
    ref_out, _ = ref.communicate(timeout=300)
    assert ref.returncode == 0, ref_out
    assert_identical(tmp_path / "ref", out)
    # The ledger shows the killed attempt(s) finished in the end, in one row.
    runs = subprocess.run([sys.executable, "-m", "shoestring", "--db",
                           f"sqlite:///{tmp_path / 'ledger.db'}", "runs", "--json"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert runs.stdout.count('"victim"') == 1 and '"finished"' in runs.stdout


def test_sigterm_checkpoints_and_corrupted_latest_falls_back(tmp_path):
    ref = shoestring(tmp_path, *ARGS, "--out", str(tmp_path / "ref"))
    out = tmp_path / "victim"
    proc = shoestring(tmp_path, *ARGS, "--out", str(out))
    # Two regular checkpoints first, so the corrupted latest has a good one before it.
    wait_for(out / "checkpoints" / "manifest.json", at_least=2)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output and "--resume" in output, output
    ckpts = sorted((out / "checkpoints").glob("ckpt-*.safetensors"))
    assert len(ckpts) >= 2
    data = bytearray(ckpts[-1].read_bytes())
    data[-100] ^= 0xFF  # corrupt the latest checkpoint's tensor bytes
    ckpts[-1].write_bytes(bytes(data))
    proc = shoestring(tmp_path, *ARGS, "--out", str(out), "--resume")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    flat = " ".join(output.split())
    assert "corrupted" in flat and "falling back" in flat, output
    ref.communicate(timeout=300)
    assert_identical(tmp_path / "ref", out)
