"""``shoestring audit`` (issue 13 items 2 and 4): a planted bias is measured and narrowed,
explanations run for the MLP, the CNN and a text encoder with a small completeness error,
the model card's numbers are the artifacts' numbers, ``--strict`` catches a tampered card,
and bad input is refused before anything is written."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from idx_files import write_idx_dir
from torch_threads import one_thread  # noqa: F401 (autouse fixture)

from shoestring.audit import audit, resolve_audit_config
from shoestring.audit.planted import (
    PlantedBias,
    planted_error_rates,
    planted_gap,
    write_planted_csv,
)
from shoestring.cli.main import build_cli
from shoestring.errors import ShoestringError
from shoestring.train.api import train
from shoestring.train.config import resolve_config

PLANTED = PlantedBias(rows=12_000, seed=1)


def _train(out: Path, source: str, model: dict, data: dict | None = None, **train_cfg):
    return train(resolve_config({"model": model, "data": {"source": source, **(data or {})},
                                 "train": train_cfg, "out": str(out)}),
                 ledger=None, handle_signals=False)


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> Path:
    """The seed MLP trained on the planted-bias table, the group column set aside."""
    base = tmp_path_factory.mktemp("planted")
    csv = write_planted_csv(base / "planted.csv", PLANTED)
    _train(base / "run", f"csv:{csv}", {"name": "seed-mlp"},
           {"label": "label", "group": ["group"]}, epochs=6)
    return base / "run"


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("cnn")
    idx = write_idx_dir(base / "idx", n_train=400, n_test=80)
    _train(base / "run", f"idx:{idx}", {"name": "cnn", "channels": [4, 8]}, epochs=3,
           batch_size=32)
    return base / "run"


TOPICS = {"sport": ["goal", "match", "team", "score"], "food": ["bake", "flour", "sugar", "oven"],
          "tech": ["code", "server", "chip", "cloud"]}


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("encoder")
    rng = random.Random(0)
    with open(base / "docs.jsonl", "w") as f:
        for i in range(240):
            t = sorted(TOPICS)[i % 3]
            f.write(json.dumps({"text": " ".join(rng.choice(TOPICS[t]) for _ in range(6)),
                                "label": t}) + "\n")
    _train(base / "run", f"jsonl:{base / 'docs.jsonl'}",
           {"name": "encoder", "n_layer": 1, "n_embd": 16, "n_head": 2}, max_steps=120,
           batch_size=16)
    return base / "run"


def _audit(run: Path, out: Path, **values):
    return audit(resolve_audit_config({"run": run, "out": out, **values}))


# --- fairness: the planted bias ------------------------------------------------------------

def test_planted_gap_is_covered_by_its_interval_and_thresholds_narrow_it(planted_run, tmp_path):
    r = _audit(planted_run, tmp_path / "a", explain=0, mitigate="thresholds", n_boot=400)
    col = r.report["fairness"]["columns"]["group"]
    truth = planted_error_rates(PLANTED)
    for g in col["groups"]:  # each group's error rate, and its interval, find the planted one
        lo, hi = g["metrics"]["error_rate"]["ci"]
        assert lo <= truth[g["group"]] <= hi, (g["group"], g["metrics"]["error_rate"])
    gap = col["gaps"]["error_rate"]
    assert gap["highest"] == "B" and gap["lowest"] == "A"
    assert gap["ci"][0] <= planted_gap(PLANTED) <= gap["ci"][1], gap
    assert gap["value"] == pytest.approx(planted_gap(PLANTED), abs=0.04)
    # Fairlearn's own differences agree with ours on the same predictions.
    ours, theirs = col["gaps"], col["gaps"]["fairlearn"]
    for k in ("demographic_parity_difference", "equalized_odds_difference"):
        assert ours[k]["value"] == pytest.approx(theirs[k], abs=1e-6)
    # Per-group thresholds, fitted on one half and scored on the other, narrow the gap.
    mit = json.loads((tmp_path / "a" / "mitigation.json").read_text())
    row = next(t for t in mit["table"] if t["gap"] == "error_rate")
    assert row["after"]["value"] < row["before"]["value"] / 2, row
    assert set(mit["fitted"]) == {"A", "B"}
    assert any(t["gap"] == "accuracy of A" for t in mit["table"])  # what narrowing cost


def test_bootstrap_intervals_cover_planted_rates_at_about_the_nominal_rate():
    """Over many planted samples, the 95% interval of the gap holds the truth ~95% of the
    time (a too-narrow or shifted interval fails this; 40 draws: 34 hits is ~3 SE below)."""
    from shoestring.audit.fairness import group_fairness

    rates, hits = {"A": 0.05, "B": 0.19}, 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        groups = np.where(rng.random(800) < 0.6, "A", "B")
        y = rng.integers(0, 2, 800)
        wrong = rng.random(800) < np.vectorize(rates.get)(groups)
        pred = np.where(wrong, 1 - y, y)
        gap = group_fairness(y, pred, groups, task="classification", classes=[0, 1],
                             n_boot=200, seed=seed)["gaps"]["error_rate"]
        hits += gap["ci"][0] <= 0.14 <= gap["ci"][1]
    assert hits >= 34, hits


def test_small_groups_are_warned_about_and_left_out_of_the_gaps():
    from shoestring.audit.fairness import group_fairness

    rng = np.random.default_rng(0)
    groups = np.array(["A"] * 200 + ["B"] * 200 + ["C"] * 5)
    y = rng.integers(0, 2, len(groups))
    out = group_fairness(y, y.copy(), groups, task="classification", classes=[0, 1],
                         n_boot=50, min_group=30)
    assert any("'C' has 5 examples" in w for w in out["warnings"])
    assert next(g for g in out["groups"] if g["group"] == "C")["too_small"]
    assert out["gaps"]["error_rate"]["value"] == 0.0


# --- explanations ------------------------------------------------------------------------

def _method(report, name):
    return next(m for m in report["explanations"]["methods"] if m["method"] == name)


def _check_ig(entry, examples):
    assert entry["examples"] == examples and entry["seconds_per_example"] > 0
    assert entry["internal_batch_size"] >= 1 and entry["bytes_per_row"] > 0
    comp = entry["completeness"]
    # Completeness: the attributions add up to f(x) − f(baseline) (Sundararajan et al.).
    assert comp["median_relative_error"] is not None and comp["median_relative_error"] < 0.05
    assert -1.0 <= entry["stability"]["spearman_mean"] <= 1.0


def test_table_explanations_and_surrogate(planted_run, tmp_path):
    r = _audit(planted_run, tmp_path / "a", explain=6, time_budget=60)
    _check_ig(_method(r.report, "integrated_gradients"), 6)
    shap = _method(r.report, "shapley_sampling")
    assert shap["examples"] >= 1 and shap["stability"]["spearman_mean"] > 0.5
    # x1 carries the signal; the group column is not a feature at all.
    top = r.report["explanations"]["global_importance"]["integrated_gradients"]
    assert top[0]["feature"] == "x1" and "group" not in {t["feature"] for t in top}
    sur = r.report["explanations"]["surrogate"]
    assert sur["fidelity"] > 0.9
    assert "x1" in (tmp_path / "a" / "surrogate.txt").read_text()
    assert (tmp_path / "a" / "surrogate.png").read_bytes()[:4] == b"\x89PNG"
    rows = (tmp_path / "a" / "attributions.jsonl").read_text().splitlines()
    assert len(rows) == 6 and set(json.loads(rows[0])["integrated_gradients"]) == \
        {"x1", "x2", "x3"}


def test_cnn_explanations_write_heatmaps(cnn_run, tmp_path):
    r = _audit(cnn_run, tmp_path / "a", explain=4, time_budget=60)
    _check_ig(_method(r.report, "integrated_gradients"), 4)
    occ = _method(r.report, "occlusion")
    assert occ["examples"] == 4 and occ["stability"]["spearman_mean"] > 0.5
    files = r.report["explanations"]["heatmaps"]
    assert len(files) == 4
    assert all((tmp_path / "a" / f).read_bytes()[:4] == b"\x89PNG" for f in files)


def test_encoder_token_attributions(encoder_run, tmp_path):
    r = _audit(encoder_run, tmp_path / "a", explain=4, time_budget=60)
    _check_ig(_method(r.report, "token_integrated_gradients"), 4)
    row = json.loads((tmp_path / "a" / "attributions.jsonl").read_text().splitlines()[0])
    assert len(row["tokens"]) == len(row["token_integrated_gradients"]) > 1


# --- the model card --------------------------------------------------------------------------

def _cells(md: str, first: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_model_card_numbers_are_the_artifacts_numbers(planted_run, tmp_path):
    out = tmp_path / "a"
    _audit(planted_run, out, explain=2, time_budget=20)
    md = (out / "model_card.md").read_text()
    summary = json.loads((planted_run / "summary.json").read_text())
    audit_json = json.loads((out / "audit.json").read_text())
    fairness = json.loads((out / "fairness.json").read_text())
    card = json.loads((out / "model_card.json").read_text())
    # Metrics: the training run's (summary.json) and the audit's own.
    for key in ("test_accuracy", "test_loss"):
        value, source = _cells(md, key)[1:]
        assert float(value) == pytest.approx(summary[key], abs=5.01e-5) and source == "summary.json"
    assert float(_cells(md, "audit test_accuracy")[1]) == pytest.approx(
        audit_json["metrics"]["test_accuracy"], abs=5.01e-5)
    # The audit recomputes the run's test accuracy from the weights: the same number.
    assert audit_json["metrics"]["test_accuracy"] == pytest.approx(summary["test_accuracy"],
                                                                   abs=1e-6)
    # Fairness rows: value [low, high] of every group and gap.
    for g in fairness["columns"]["group"]["groups"]:
        cell = _cells(md, g["group"])[3]
        m = g["metrics"]["error_rate"]
        assert [float(v) for v in re.findall(r"[\d.]+", cell)] == pytest.approx(
            [m["value"], *m["ci"]], abs=5.01e-5)
        assert int(_cells(md, g["group"])[1]) == g["n"]
    gap = fairness["columns"]["group"]["gaps"]["error_rate"]
    assert [float(v) for v in re.findall(r"[\d.]+", _cells(md, "error_rate")[1])] == \
        pytest.approx([gap["value"], *gap["ci"]], abs=5.01e-5)
    # Parameters, weights digest, serving cost, privacy.
    assert f"- Parameters: {summary['parameters']}" in md
    import hashlib
    digest = hashlib.sha256((planted_run / "model.safetensors").read_bytes()).hexdigest()
    assert f"- Weights sha256: {digest}" in md and card["model"]["weights_sha256"] == digest
    s = audit_json["serving"]
    assert f"${s['usd_per_1000']:.6f} at batch 1" in md and "plan catalog" in md
    # Trained without a price: its measured seconds at the same catalog price, said so.
    t = audit_json["training_cost"]
    assert summary["cost_usd"] == 0 and t["seconds"] == summary["train_seconds"]
    assert t["usd"] == pytest.approx(summary["train_seconds"] / 3600 * s["price_per_hour"],
                                     abs=1e-9)
    assert (f"- Training: ${t['usd']:.6f} for {summary['train_seconds']:.2f} s at "
            f"${s['price_per_hour']:.4f}/h (source: train_seconds from summary.json (no price "
            "recorded) × plan catalog") in md
    assert "- Differential privacy: none (source: summary.json)" in md
    assert card["privacy"]["differential_privacy"] == "none"
    assert "TODO (a person must write this)" in md


def test_strict_passes_an_untouched_card_and_catches_a_tampered_one(planted_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(planted_run, run)
    cli = build_cli()

    def invoke(*args):
        return CliRunner().invoke(cli, ["audit", str(run), "--explain", "0", "--n-boot", "60",
                                        *args], catch_exceptions=False)

    first = invoke()
    assert first.exit_code == 0, first.output
    card = run / "audit" / "model_card.md"
    # A person writes the intended use: allowed, and kept on regeneration.
    text = card.read_text().replace("TODO (a person must write this): who should use the "
                                    "model, for what decisions, and which uses are out of "
                                    "scope.", "Loan pre-screening by trained staff only.")
    card.write_text(text)
    ok = invoke("--strict")
    assert ok.exit_code == 0, ok.output
    assert "Loan pre-screening by trained staff only." in card.read_text()
    # A hand-edited number is caught, and nothing is rewritten.
    line = next(x for x in card.read_text().splitlines() if x.startswith("| test_accuracy |"))
    tampered = card.read_text().replace(line, "| test_accuracy | 0.9990 | summary.json |")
    card.write_text(tampered)
    bad = invoke("--strict")
    assert bad.exit_code == 1
    assert "0.9990" in bad.output and "not supported by the artifacts" in bad.output
    assert card.read_text() == tampered
    # So is a metric added without an artifact behind it.
    card.write_text(text.replace("## Metrics\n", "## Metrics\n\n- AUC: 0.99\n"))
    assert invoke("--strict").exit_code == 1
    # And a card whose JSON was edited.
    card.write_text(text)
    j = run / "audit" / "model_card.json"
    data = json.loads(j.read_text())
    data["metrics"]["training_run"]["test_accuracy"] = 0.999
    j.write_text(json.dumps(data))
    bad = invoke("--strict")
    assert bad.exit_code == 1 and "metrics.training_run.test_accuracy" in bad.output


def test_cli_json_and_table(planted_run, tmp_path):
    r = CliRunner().invoke(build_cli(), ["audit", str(planted_run), "--out", str(tmp_path / "a"),
                                         "--explain", "0", "--n-boot", "60", "--json"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["fairness"]["columns"]["group"]["gaps"]["error_rate"]["value"] > 0.05
    assert "no explanations computed (--explain 0)" in report["caveats"]
    # The human view: every value whole at 80 columns (tables wrap or stack, never cut).
    gap = report["fairness"]["columns"]["group"]["gaps"]["error_rate"]
    r = CliRunner().invoke(build_cli(), ["audit", str(planted_run), "--out", str(tmp_path / "b"),
                                         "--explain", "0", "--n-boot", "60",
                                         "--mitigate", "thresholds"],
                           env={"COLUMNS": "80"}, catch_exceptions=False)
    assert r.exit_code == 0 and "…" not in r.stdout, r.output
    assert f"{gap['value']:.4f} [{gap['ci'][0]:.4f}, {gap['ci'][1]:.4f}]" in r.stdout
    assert "accuracy of A" in r.stdout and "model_card.md" in r.stdout
    assert report["serving"]["usd_per_1000"] > 0 and report["serving"]["ms_per_request"] > 0


# --- bad input ---------------------------------------------------------------------------------

def test_group_column_that_does_not_exist(planted_run, tmp_path):
    with pytest.raises(ShoestringError, match=re.escape("group column(s) 'sex' not found")) as e:
        _audit(planted_run, tmp_path / "a", group=["sex"], explain=0)
    assert "columns are: x1, x2, x3, group, label" in e.value.hint
    assert not (tmp_path / "a").exists()


def test_group_column_with_one_value(tmp_path):
    rng = np.random.default_rng(0)
    with open(tmp_path / "t.csv", "w") as f, open(tmp_path / "plain.csv", "w") as g:
        f.write("a,b,country,y\n")
        g.write("a,b,y\n")
        for _ in range(200):
            a, b = rng.normal(size=2)
            f.write(f"{a:.4f},{b:.4f},FR,{int(a > 0)}\n")
            g.write(f"{a:.4f},{b:.4f},{int(a > 0)}\n")
    source = f"csv:{tmp_path / 't.csv'}"
    with pytest.raises(ShoestringError, match="has one value \\('FR'\\)"):  # train refuses
        _train(tmp_path / "bad", source, {"name": "seed-mlp"},
               {"label": "y", "group": ["country"]}, epochs=1)
    _train(tmp_path / "run", f"csv:{tmp_path / 'plain.csv'}", {"name": "seed-mlp"},
           {"label": "y"}, epochs=1)
    with pytest.raises(ShoestringError, match="has one value \\('FR'\\)") as e:
        _audit(tmp_path / "run", tmp_path / "a", explain=0, group=["country"], data=source)
    assert "choose a column" in e.value.hint
    assert not (tmp_path / "a").exists()


def test_requests_the_run_cannot_satisfy_are_refused_before_writing(cnn_run, tmp_path):
    out = tmp_path / "a"
    with pytest.raises(ShoestringError, match="needs group columns"):
        _audit(cnn_run, out, explain=0, mitigate="thresholds")
    with pytest.raises(ShoestringError, match="unknown key"):
        resolve_audit_config({"run": cnn_run, "explian": 3})
    assert not out.exists()


def test_a_model_the_explainers_cannot_handle(tmp_path):
    from shoestring.audit.explain.run import check_explainable

    with pytest.raises(ShoestringError, match="no explainer here handles a 'gpt' model") as e:
        check_explainable("gpt", "text")
    assert "--explain 0" in e.value.hint
    with pytest.raises(ShoestringError, match="ONNX graph") as e:
        check_explainable("mlp", "table", ("onnx",))
    assert "lineage parent" in e.value.hint


def test_a_language_model_run_is_refused(tmp_path):
    (tmp_path / "c.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    _train(tmp_path / "gpt", f"text:{tmp_path / 'c.txt'}",
           {"name": "gpt", "n_layer": 1, "n_embd": 16, "n_head": 2, "block_size": 16},
           max_steps=2, batch_size=4)
    r = CliRunner().invoke(build_cli(), ["audit", str(tmp_path / "gpt")],
                           catch_exceptions=False)
    assert r.exit_code == 1 and "language model" in r.output and "shoestring eval" in r.output
    assert not (tmp_path / "gpt" / "audit").exists()


def test_reweight_retrains_a_run_with_balanced_batches(planted_run, tmp_path):
    """--mitigate reweight retrains through the training hooks into audit/reweighted/ and
    scores both models on the same split (on this bias it cannot narrow the gap: B's
    corrupted rows carry no signal; the bench shows that)."""
    from shoestring.audit.mitigate import balanced_weights
    from shoestring.models.run_folder import load_run

    r = _audit(planted_run, tmp_path / "a", explain=0, mitigate="reweight", n_boot=60)
    mit = r.report["mitigation"]
    retrained = Path(mit["retrained_run"])
    assert load_run(retrained).card.family == "mlp"
    assert (retrained / "config.toml").read_text().count("group") >= 1
    assert {row["gap"] for row in mit["table"]} >= {"error_rate", "accuracy of A"}
    assert mit["before"]["groups"][0]["n"] == mit["after"]["groups"][0]["n"]
    # Every (group, label) cell weighs the same in the batches drawn.
    w = balanced_weights(["A"] * 6 + ["B"] * 2, np.array([0, 0, 0, 0, 1, 1, 0, 1]))
    cells = {("A", 0): w[:4].sum(), ("A", 1): w[4:6].sum(), ("B", 0): w[6], ("B", 1): w[7]}
    assert all(v == pytest.approx(0.25) for v in cells.values())
