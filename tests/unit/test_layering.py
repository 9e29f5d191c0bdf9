"""Imports run one way (issue 11, item 2): every import of src/shoestring, function-level
and TYPE_CHECKING ones included, against the layer order of tests/architecture.py
(docs/architecture.md draws it)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from architecture import LAYERS, MODULE_LAYERS, SRC, import_edges, layer_of, violations


def test_no_import_runs_up_the_layers():
    edges = import_edges()
    assert len(edges) > 500  # the parser sees the package, not an empty tree
    bad = violations(edges)
    assert not bad, "imports against the layer order:\n" + "\n".join(map(str, bad))


def test_every_top_level_module_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert names - set(LAYERS) == set(), "place new top-level modules in LAYERS"
    assert set(MODULE_LAYERS.values()) <= set(LAYERS)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "shoestring"
    for name, code in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code))
    for d in [src, *[p for p in src.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    return src


def test_an_upward_import_fails_wherever_it_hides(tmp_path):
    src = _tree(tmp_path, {
        "models/ok.py": "from shoestring.errors import ShoestringError\n",
        "models/top.py": "from shoestring.train.api import train\n",
        "data/inside.py": """
            def load():
                from shoestring.plan import presets  # function-level
            """,
        "plan/typed.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from shoestring.serve.app import build_app
            """,
        "ledger/dyn.py": """
            import importlib
            importlib.import_module("shoestring.report.tables")
            """,
        "serve/sibling.py": "from ..compress import api\n",  # relative, across siblings
        "train/down.py": "from shoestring.plan.compute import step_flops\n",
    })
    found = {(e.source, e.target) for e in violations(import_edges(src))}
    assert found == {("shoestring.models.top", "shoestring.train.api"),
                     ("shoestring.data.inside", "shoestring.plan"),
                     ("shoestring.plan.typed", "shoestring.serve.app"),
                     ("shoestring.ledger.dyn", "shoestring.report.tables"),
                     ("shoestring.serve.sibling", "shoestring.compress")}


def test_the_run_config_sits_below_the_planner():
    assert layer_of("shoestring.train.config") == "run-config"
    assert LAYERS["data"] < LAYERS["run-config"] < LAYERS["plan"] < LAYERS["train"]
