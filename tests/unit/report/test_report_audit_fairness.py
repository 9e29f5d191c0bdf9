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
