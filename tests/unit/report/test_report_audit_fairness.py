"""The report's audit section shows the fairness table that `shoestring audit` writes.

fairness.json keeps one table per group column under ``columns``; the section
used to look for a top-level ``groups`` list and rendered nothing.
"""

from __future__ import annotations

import json

import numpy as np

from shoestring.audit.fairness import fairness_report
from shoestring.report.audit_section import audit_section


def test_the_fairness_table_of_every_group_column_is_shown(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.9, y, 1 - y)
    groups = {"sex": np.where(rng.random(400) < 0.5, "f", "m").tolist(),
              "region": np.where(rng.random(400) < 0.5, "north", "south").tolist()}
    report = fairness_report(y, pred, groups, task="classification", classes=[0, 1], n_boot=50)
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "fairness.json").write_text(json.dumps(report))
    html = audit_section(audit, None)
    for text in ("Fairness by group (sex)", "Fairness by group (region)", "north", "south",
                 "demographic_parity_difference"):
        assert text in html, text
    acc_f = report["columns"]["sex"]["groups"][0]["metrics"]["accuracy"]["value"]
    assert f"{acc_f:.4g}"[:4] in html


def test_the_privacy_figures_are_read_as_training_writes_them(tmp_path):
    audit = tmp_path / "audit"
    audit.mkdir()
    summary = {"privacy": {"epsilon": 2.990399, "delta": 5.55e-06, "noise_multiplier": 1.0791,
                           "sample_rate": 0.0171, "max_grad_norm": 1.0, "accountant": "rdp"}}
    html = audit_section(audit, summary)
    for text in ("privacy ε spent (DP-SGD)", "2.99", "5.55e-06", "1.079", "rdp"):
        assert text in html, text
    assert "DP-SGD" not in audit_section(audit, {"test_accuracy": 0.9})   # no DP: no line
