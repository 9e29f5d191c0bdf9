"""prepare() on a generated JSONL corpus with planted problems: every count is exact."""

from __future__ import annotations

import json

import pytest
from planted_corpus import PII_SAMPLES, write_text_corpus

from shoestring.data.prepare import prepare, resolve_prepare_config
from shoestring.data.prepare.shards import ShardSet
from shoestring.errors import ConfigError, ShoestringError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    truth = write_text_corpus(root / "docs.jsonl")
    cfg = resolve_prepare_config({"source": f"jsonl:{root / 'docs.jsonl'}", "out": root / "out",
                                  "label_issues": False})
    return truth, prepare(cfg), cfg


def test_planted_counts_match_the_report(prepared):
    truth, result, _ = prepared
    r = result.report
    assert r["input"] == truth.input
    assert r["dropped"]["invalid"] == sum(truth.invalid.values())
    assert r["invalid_reasons"] == truth.invalid
    assert r["dropped"]["exact_duplicate"] == truth.exact_dups
    assert r["dropped"]["near_duplicate"] == truth.near_dups
    # Pairs just below the threshold were candidates, failed verification, stayed.
    assert r["clusters"]["near"]["rejected_by_verification"] >= truth.below
    assert r["kept"] == truth.unique + truth.below
    assert r["pii"] == truth.pii


def test_accounting_invariant_holds_and_is_written(prepared):
    _, result, cfg = prepared
    r = result.report
    assert r["input"] == r["kept"] + sum(r["dropped"].values())
    assert r["accounting"]["holds"] is True
    on_disk = json.loads((cfg.out / "report.json").read_text())
    assert on_disk["accounting"] == r["accounting"]
    assert sum(r["splits"].values()) == r["kept"]


def test_quarantine_lists_each_rejection_with_reason_and_origin(prepared):
    truth, _, cfg = prepared
    rows = [json.loads(line) for line in (cfg.out / "quarantine.jsonl").read_text().splitlines()]
    assert len(rows) == sum(truth.invalid.values())
    assert {r["reason"] for r in rows} == set(truth.invalid)
    for r in rows:
        name, _, line = r["origin"].rpartition(":")
        assert name == "docs.jsonl" and int(line) >= 1


def test_near_duplicate_clusters_record_similarity_at_or_above_threshold(prepared):
    _, _, cfg = prepared
    rows = [json.loads(line) for line in (cfg.out / "clusters.jsonl").read_text().splitlines()]
    near = [m for r in rows if r["kind"] == "near" for m in r["members"]
            if m["action"] == "near_duplicate"]
    assert len(near) == 20
    assert min(m["similarity"] for m in near) == pytest.approx(0.8)
    assert all(m["duplicate_of"] for m in near)


def test_shards_hold_exactly_the_kept_records(prepared):
    _, result, cfg = prepared
    shards = ShardSet(cfg.out / "shards")
    texts = [t for split in ("train", "val", "test") for t in shards.load(split)[0]]
    assert len(texts) == result.report["kept"] == len(set(texts))


def test_same_inputs_and_options_reuse_the_folder(prepared):
    _, first, cfg = prepared
    again = prepare(cfg)
    assert again.reused and again.report == first.report


def test_changed_options_refuse_to_overwrite_without_force(prepared):
    _, _, cfg = prepared
    other = cfg.model_copy(update={"near_threshold": 0.7})
    with pytest.raises(ShoestringError, match="different preparation"):
        prepare(other)


def test_out_that_is_not_a_prepared_folder_is_never_replaced(tmp_path):
    (tmp_path / "docs.jsonl").write_text('{"text": "hello there"}\n')
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "precious.txt").write_text("do not delete")
    cfg = resolve_prepare_config({"source": f"jsonl:{tmp_path / 'docs.jsonl'}", "out": keep,
                                  "force": True})
    with pytest.raises(ShoestringError, match="not a prepared folder"):
        prepare(cfg)
    assert (keep / "precious.txt").exists()


def test_pii_redact_rewrites_text_in_the_shards(tmp_path):
    truth = write_text_corpus(tmp_path / "d.jsonl", seed=1)
    cfg = resolve_prepare_config({"source": f"jsonl:{tmp_path / 'd.jsonl'}",
                                  "out": tmp_path / "o", "pii": "redact",
                                  "label_issues": False})
    r = prepare(cfg).report
    assert r["pii"] == truth.pii
    shards = ShardSet(cfg.out / "shards")
    blob = "\n".join(t for s in ("train", "val", "test") for t in shards.load(s)[0])
    for samples in PII_SAMPLES.values():
        for s in samples:
            assert s not in blob
    assert blob.count("[EMAIL]") == 2 and blob.count("[CREDIT_CARD]") == 2


def test_pii_hash_without_a_secret_is_a_clear_error(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "mail a@b.co"}\n')
    cfg = resolve_prepare_config({"source": f"jsonl:{tmp_path / 'd.jsonl'}",
                                  "out": tmp_path / "o", "pii": "hash"})
    with pytest.raises(ShoestringError, match="SHOESTRING_PII_KEY") as err:
        prepare(cfg, environ={})
    assert "export SHOESTRING_PII_KEY" in err.value.hint
    assert not (tmp_path / "o").exists()


def test_every_config_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        resolve_prepare_config({"source": "x", "out": "y", "near_threshold": 1.5,
                                "split": "random", "val_fraction": 0.6, "test_fraction": 0.5,
                                "pii_types": ["email", "dna"], "typo_field": 1})
    problems = err.value.problems
    assert len(problems) == 2  # field errors first; cross-field checks need valid fields
    assert any("near_threshold" in p for p in problems)
    assert any("typo_field" in p for p in problems)
    with pytest.raises(ConfigError) as err:
        resolve_prepare_config({"source": "x", "out": "y", "split": "random",
                                "val_fraction": 0.6, "test_fraction": 0.5,
                                "pii_types": ["email", "dna"]})
    assert len(err.value.problems) == 2


def test_keep_duplicates_removes_nothing_but_keeps_clusters_together(tmp_path):
    truth = write_text_corpus(tmp_path / "d.jsonl", seed=2)
    cfg = resolve_prepare_config({"source": f"jsonl:{tmp_path / 'd.jsonl'}",
                                  "out": tmp_path / "o", "keep_duplicates": True,
                                  "label_issues": False, "val_fraction": 0.3,
                                  "test_fraction": 0.3})
    r = prepare(cfg).report
    assert r["dropped"]["exact_duplicate"] == r["dropped"]["near_duplicate"] == 0
    assert r["kept"] == truth.input - sum(truth.invalid.values())
    assert r["duplicates_across_splits"] == 0
    assert r["clusters"]["exact"]["clusters"] == truth.exact_dups


def test_pii_encrypt_round_trips_through_the_shards(tmp_path):
    import os

    from shoestring.data.prepare.pii_ops import reveal

    texts = ["alice: mail alice@example.com", "bob: card 4111 1111 1111 1111 thanks"]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    key = os.urandom(32)
    cfg = resolve_prepare_config({"source": f"jsonl:{tmp_path / 'd.jsonl'}",
                                  "out": tmp_path / "o", "pii": "encrypt",
                                  "val_fraction": 0.0, "test_fraction": 0.0})
    r = prepare(cfg, environ={"SHOESTRING_PII_KEY": key.hex()}).report
    assert r["pii"] == {"credit_card": 1, "email": 1}
    stored = ShardSet(cfg.out / "shards").load("train")[0]
    assert not any("alice@" in t or "4111" in t for t in stored)
    assert sorted(reveal(t, key) for t in stored) == sorted(texts)
    assert key.hex() not in "".join(p.read_text(errors="ignore") for p in cfg.out.rglob("*")
                                    if p.is_file())


def test_a_source_without_records_is_an_error(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    cfg = resolve_prepare_config({"source": f"jsonl:{tmp_path / 'e.jsonl'}",
                                  "out": tmp_path / "o"})
    with pytest.raises(ShoestringError, match="holds no records"):
        prepare(cfg)
    assert not (tmp_path / "o").exists()
