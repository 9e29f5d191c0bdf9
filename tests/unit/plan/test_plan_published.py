"""The planner against published measurements (issue 14): the table in docs/plan.md
is recomputed here, so it cannot drift from what the planner predicts."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs" / "plan.md"


def _bench():
    if "plan_published_bench" in sys.modules:
        return sys.modules["plan_published_bench"]
    spec = importlib.util.spec_from_file_location("plan_published_bench",
                                                  ROOT / "bench" / "plan_published.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results():
    return _bench().compare_all()


def test_the_docs_table_is_what_the_planner_predicts_today(results):
    text = DOCS.read_text()
    table = re.search(r"<!-- published-table -->\n(.*?)\n<!-- /published-table -->", text,
                      re.DOTALL)
    assert table, "docs/plan.md lost its published-table markers"
    assert table.group(1).strip() == _bench().markdown(results).strip(), \
        "docs/plan.md is stale: paste `python bench/plan_published.py` between the markers"


def test_the_docs_summary_counts_match(results):
    counts = _bench().summary(results)   # e.g. "memory: 12 of 13; longest context: 3 of 4; …"
    text = DOCS.read_text()
    for label, hit, total in re.findall(r"(memory|longest context|time and cost): (\d+) of (\d+)",
                                        counts):
        assert f"{label} {hit}" in text and f"of {total}" in text, (label, hit, total)


# The misses docs/plan.md explains; a new miss, or a miss that went away, must be
# looked at (and the explanation updated), not silently absorbed.
EXPECTED_MISSES = {
    ("torchtune-8b-full-4090", "tokens/s"), ("torchtune-8b-lora-4090", "tokens/s"),
    ("torchtune-8b-qlora-4090", "tokens/s"), ("torchtune-8b-full-a6000", "tokens/s"),
    ("torchtune-8b-lora-a6000", "tokens/s"), ("torchtune-3b-qlora", "memory"), ("unsloth-8b-qlora-context-80gb", "context"),
    ("llmc-gpt2-124m", "hours"), ("llmc-gpt2-124m", "cost"),
    ("llmc-gpt2-1.5b", "hours"), ("llmc-gpt2-1.5b", "cost"),
}


def test_misses_are_the_explained_ones(results):
    misses = {(c.row, c.quantity) for _, comps in results for c in comps if not c.within_aim()}
    assert misses == EXPECTED_MISSES


def test_memory_is_never_far_under_a_published_peak(results):
    """The dangerous direction: predicting less memory than a run needed."""
    for _, comps in results:
        for c in comps:
            if c.quantity == "memory":
                assert c.error >= -0.05, (c.row, c.error)
            if c.quantity == "context":
                assert c.error <= 0.05, (c.row, c.error)


def test_each_row_names_a_source_and_the_recipe_it_ran():
    rows, _ = _bench().load_rows()
    assert len(rows) >= 20
    for row in rows:
        assert row["url"].startswith("https://") and row["source"] and row["setup"]
    kinds = {r["setup"].get("finetune", "full") for r in rows}
    assert {"full", "lora", "qlora"} <= kinds
    assert any("hours" in r["measured"] and "cost_usd" in r["measured"] for r in rows)
