"""Issue 16 item 13: slow work is never silent, and fails early when it cannot work."""

from __future__ import annotations

import os
import subprocess
import sys

from shoestring.train.api import train
from shoestring.train.config import resolve_config


def test_gradient_accumulation_reports_every_micro_batch(tmp_path):
    """Issue 16 item 13: a long optimizer step shows progress per micro-batch."""
    from shoestring.train.reporter import SilentReporter

    reporter = SilentReporter()
    config = resolve_config({"model": {"name": "mlp", "hidden": [8]},
                             "data": {"source": "digits"}, "out": str(tmp_path / "run"),
                             "train": {"epochs": 1, "batch_size": 64, "micro_batch_size": 16,
                                       "max_steps": 3, "threads": 1}})
    train(config, reporter=reporter)
    assert reporter.micro_batches[:5] == [(0, 1, 4), (0, 2, 4), (0, 3, 4), (0, 4, 4), (1, 1, 4)]
    assert len(reporter.micro_batches) == 3 * 4


def test_fsdp_on_a_cpu_fails_before_torchrun_with_one_line_and_a_hint(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "shoestring", "train", "--data", "digits",
                           "--nproc", "2", "--strategy", "fsdp", "--device", "cpu",
                           "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert err[0].startswith("Error: --strategy fsdp shards the model over GPUs")
    assert err[1].startswith("Hint: use --strategy ddp") and len(err) == 2
    assert not (tmp_path / "run").exists()  # nothing launched, nothing written


def test_a_slow_run_says_so_after_its_first_steps():
    from shoestring.train.eta import SlowRunNotice, duration

    class Stepper:
        now = 0.0

        def __call__(self, x, y):
            Stepper.now += 0.07  # 70 ms per step

    logs = []
    notice = SlowRunNotice(Stepper(), 4690, log=logs.append, hint="try X",
                           clock=lambda: Stepper.now)
    for _ in range(30):
        notice(None, None)
    assert len(logs) == 1 and "about 5 min 27 s more" in logs[0] and logs[0].endswith("try X")
    quick = SlowRunNotice(Stepper(), 200, log=logs.append)
    for _ in range(30):
        quick(None, None)
    assert len(logs) == 1 and duration(5400) == "1 h 30 min"
