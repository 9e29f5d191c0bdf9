"""``shoestring data prepare|report|leakage`` and ``train --data prepared:DIR``, end to end
through the real command line (a subprocess per command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CLI = [sys.executable, "-c", "from shoestring.cli.main import run; run()"]


def shoestring(*args, cwd, env=None):
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=240,
                          check=False,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})})


@pytest.fixture
def docs(tmp_path):
    lines = []
    for i in range(60):
        words = " ".join(f"w{i}x{k}" for k in range(20))
        lines.append({"text": f"{words} {'good' if i % 2 else 'bad'}", "label": i % 2})
    lines.append({"text": lines[0]["text"].upper(), "label": 0})  # an exact duplicate
    lines.append({"text": "contact me at someone@example.com now", "label": 1})
    body = "".join(json.dumps(r) + "\n" for r in lines) + "{not json\n"
    (tmp_path / "docs.jsonl").write_text(body)
    return tmp_path / "docs.jsonl"


def test_prepare_report_and_reuse(tmp_path, docs):
    out = tmp_path / "prep"
    first = shoestring("data", "prepare", f"jsonl:{docs}", "--out", str(out),
                       "--label-field", "label", "--pii", "redact", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["input"] == 63 and report["dropped"]["invalid"] == 1
    assert report["dropped"]["exact_duplicate"] == 1 and report["pii"] == {"email": 1}
    assert report["accounting"]["holds"]
    assert (out / "prepare.toml").exists() and (out / "shards" / "index.json").exists()
    again = shoestring("data", "prepare", f"jsonl:{docs}", "--out", str(out),
                       "--label-field", "label", "--pii", "redact", cwd=tmp_path)
    assert again.returncode == 0 and "Reused" in again.stderr
    shown = shoestring("data", "report", str(out), cwd=tmp_path)
    assert shown.returncode == 0 and "accounting" in shown.stdout and "holds" in shown.stdout


def test_bad_input_gets_error_and_hint(tmp_path):
    missing = shoestring("data", "prepare", "jsonl:nope.jsonl", "--out", "p", cwd=tmp_path)
    assert missing.returncode == 1
    assert "Error: data path 'nope.jsonl' does not exist" in missing.stderr
    assert "Hint:" in missing.stderr
    bad = shoestring("data", "prepare", "digits", "--out", "p", "--near-threshold", "3",
                     "--val-fraction", "2", cwd=tmp_path)
    assert bad.returncode == 1 and "2 problems" in bad.stderr
    assert not (tmp_path / "p").exists()


def test_train_on_a_prepared_table(tmp_path):
    out = tmp_path / "prep"
    prep = shoestring("data", "prepare", "digits", "--out", str(out), "--no-label-issues",
                      cwd=tmp_path)
    assert prep.returncode == 0, prep.stderr
    run = shoestring("train", "--data", f"prepared:{out}", "--epochs", "5", "--model", "mlp",
                     "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["test_accuracy"] > 0.85
    # Digits are 8x8 images flattened to 64 features: augmentation must refuse them.
    aug = shoestring("train", "--data", f"prepared:{out}", "--epochs", "1", "--augment",
                     "crop", "--out", str(tmp_path / "run2"), cwd=tmp_path)
    assert aug.returncode == 1 and "image data" in aug.stderr


def test_train_on_prepared_idx_images_with_augmentation(tmp_path):
    from idx_files import write_idx_dir

    src = write_idx_dir(tmp_path / "idx", n_train=400, n_test=100, side=12)
    out = tmp_path / "prep"
    prep = shoestring("data", "prepare", f"idx:{src}", "--out", str(out), "--no-label-issues",
                      cwd=tmp_path)
    assert prep.returncode == 0, prep.stderr
    # The classes of this data are horizontal bands: mirroring keeps them, shifts would not.
    run = shoestring("train", "--data", f"prepared:{out}", "--model", "cnn", "--epochs", "3",
                     "--batch-size", "32", "--augment", "flip", "--threads", "1",
                     "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["test_accuracy"] > 0.6
    model = json.loads((tmp_path / "run" / "model.json").read_text())
    assert model["preprocessing"]["scale"] == pytest.approx(1 / 255)


def test_leakage_command(tmp_path, docs):
    test_file = tmp_path / "test.jsonl"
    rows = [json.loads(line) for line in docs.read_text().splitlines()[:5]]
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = shoestring("data", "leakage", f"jsonl:{docs}", f"jsonl:{test_file}", "--json",
                   cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["test_in_train"]["exact"] == 5
