"""The documented layer order of ``src/shoestring`` and the import edges that break it.

Imports run one way (docs/architecture.md)::

    shared (types, errors, io, config, version) → ledger → models → data
        → run config (train/config.py, train/stopping.py) → plan → train
        → serve | compress | audit | report → quickstart → cli → the package facade

A module may import its own layer and any layer to its left; the four
capabilities after ``train`` are siblings that hand each other run folders and
ledger rows, never imports. The run config is the schema of a run's
``config.toml`` (and the stopping rules its fields name): plain data the planner
reads (``plan runs/x/config.toml``, ``train --plan-first``) and training runs
on, so it sits below both, although its files live in ``train/``. Every import counts: module level, inside
functions, under ``TYPE_CHECKING``, and ``importlib.import_module("shoestring.…")``
with a literal name.

A unique module name (tests/ has no packages); ``scripts/seams.py`` loads it by path.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "shoestring"

# Layer of each top-level module or subpackage, and its rank (lower = lower layer).
LAYERS: dict[str, int] = {
    "types": 0, "errors": 0, "io": 0, "config": 0, "version": 0, "crypto": 0,
    "ledger": 1,
    "models": 2,
    "data": 3,
    "run-config": 4,
    "plan": 5,
    "train": 6,
    "serve": 7, "compress": 7, "audit": 7, "report": 7,
    "quickstart": 8,
    "cli": 9,
    "__init__": 10, "__main__": 10,
}
# Modules whose layer is not their folder's.
MODULE_LAYERS: dict[str, str] = {
    "shoestring.train.config": "run-config",
    "shoestring.train.stopping": "run-config",
}


@dataclass(frozen=True)
class Edge:
    source: str       # importing module, dotted (shoestring.plan.preflight)
    target: str       # imported module, dotted
    line: int

    def layers(self) -> tuple[str, str]:
        return layer_of(self.source), layer_of(self.target)

    def __str__(self) -> str:
        a, b = self.layers()
        return f"{self.source}:{self.line} imports {self.target} ({a} → {b})"


def layer_of(module: str) -> str:
    if module in MODULE_LAYERS:
        return MODULE_LAYERS[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1] if len(parts) > 2 else parts
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(src: Path = SRC) -> list[Edge]:
    """Every ``shoestring.*`` import of every module under ``src``."""
    edges = []
    for path in sorted(src.rglob("*.py")):
        module = _module_name(path, src)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, module, path.name == "__init__.py")
                if base:
                    # "from shoestring import train" names a submodule when one exists.
                    targets = [f"{base}.{a.name}" if base == "shoestring" else base
                               for a in node.names]
            elif isinstance(node, ast.Call) and node.args and \
                    isinstance(node.args[0], ast.Constant) and \
                    isinstance(node.args[0].value, str) and \
                    getattr(node.func, "attr", getattr(node.func, "id", None)) in \
                    ("import_module", "__import__"):
                targets = [node.args[0].value]
            for t in targets:
                if t == "shoestring" or t.startswith("shoestring."):
                    edges.append(Edge(module, t, node.lineno))
    return edges


def violations(edges: list[Edge]) -> list[Edge]:
    """Edges that point to a higher layer, or across sibling capabilities."""
    bad = []
    for e in edges:
        a, b = e.layers()
        if a not in LAYERS or b not in LAYERS:
            bad.append(e)  # a new top-level module must be placed in LAYERS first
        elif LAYERS[b] > LAYERS[a] or (LAYERS[b] == LAYERS[a] and a != b
                                       and LAYERS[a] > 0):
            bad.append(e)
    return bad
