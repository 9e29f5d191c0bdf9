"""Measure the seams between Shoestring's capabilities (docs/architecture.md, "Seams").

Counts what issue 11 found copied or crossed: run-folder file names spelled
outside their owner, hand-built model cards, config-error formatters, flag
generators and hand-written flags, CLI error boundaries, ledger openers,
imports that run up the layer order, the size of the training loop's
functions, docstring examples and whether they run, presets and FLOPs formulas.

    python scripts/seams.py                    # this checkout, as a table
    python scripts/seams.py --root OTHER_CHECKOUT --json
    python scripts/seams.py --layers           # import edges between layers, as the code has them
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = {"model.json", "model.safetensors", "tokenizer.json", "config.toml", "summary.json",
             "metrics.jsonl", "run.json", "checkpoints", "launch.toml"}
RUN_FOLDER_OWNER = Path("models") / "run_folder.py"


def _architecture():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "tests" /
                                                  "architecture.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["architecture"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _trees(src: Path):
    for path in sorted(src.rglob("*.py")):
        yield path, ast.parse(path.read_text())


def _call_name(node: ast.Call) -> str:
    f = node.func
    if isinstance(f, ast.Attribute):
        base = f.value.id if isinstance(f.value, ast.Name) else ""
        return f"{base}.{f.attr}"
    return f.id if isinstance(f, ast.Name) else ""


def _function(trees, name: str):
    for path, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name \
                    and "train" in path.parts[-2:]:
                return node
    return None


def _params(fn) -> int:
    a = fn.args
    return len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)


def measure(root: Path = ROOT) -> dict:
    src = root / "src" / "shoestring"
    trees = list(_trees(src))
    m: dict = {}
    names = [(p, n) for p, t in trees for n in ast.walk(t)
             if isinstance(n, ast.Constant) and n.value in RUN_FILES
             and p.relative_to(src) != RUN_FOLDER_OWNER]
    m["run-folder file names spelled outside their owner"] = len(names)
    m["  ... in files"] = len({p for p, _ in names})
    cards = [n for _, t in trees for n in ast.walk(t) if isinstance(n, ast.Dict) and
             {"architecture", "input_shape"} <= {k.value for k in n.keys
                                                 if isinstance(k, ast.Constant)}]
    m["hand-built model.json dicts"] = len(cards)
    formatters = [n for _, t in trees for n in ast.walk(t) if isinstance(n, ast.Call)
                  and isinstance(n.func, ast.Attribute) and n.func.attr == "errors"
                  and not n.args]
    m["ValidationError formatters (code reading exc.errors())"] = len(formatters)
    cli = [(p, t) for p, t in trees if "cli" in p.parts]
    gens = [n for _, t in cli for n in ast.walk(t) if isinstance(n, ast.FunctionDef)
            and "model_fields" in ast.unparse(n)
            and not any(isinstance(c, ast.FunctionDef) and "model_fields" in ast.unparse(c)
                        for c in ast.walk(n) if c is not n)]
    m["flag generators in cli/"] = len(gens)
    hand = [n for _, t in cli for n in ast.walk(t) if isinstance(n, ast.Call) and _call_name(n)
            in ("click.option", "click.Option", "typer.Option", "typer.Argument",
                "click.argument", "click.Argument")]
    m["hand-written click/typer options and arguments"] = len(hand)
    m["CLI error boundaries (guarded(...) calls)"] = sum(
        1 for _, t in cli for n in ast.walk(t) if isinstance(n, ast.Call) and
        _call_name(n) == "guarded")
    m["typer imports"] = sum(1 for _, t in trees for n in ast.walk(t)
                             if isinstance(n, ast.Import) and any(a.name == "typer"
                                                                  for a in n.names))
    m["ledger openers (make_engine/ensure_tables callers outside ledger/)"] = sum(
        1 for p, t in trees if "ledger" not in p.parts for n in ast.walk(t)
        if isinstance(n, ast.Call) and _call_name(n) in ("make_engine", "ensure_tables"))
    arch = _architecture()
    m["imports against the layer order"] = len(arch.violations(arch.import_edges(src)))
    for name in ("_train", "run_loop", "train"):
        fn = _function(trees, name)
        if fn is not None:
            m[f"train/{name}: lines, parameters"] = \
                f"{fn.end_lineno - fn.lineno + 1}, {_params(fn)}"
    longest = max(((n.end_lineno - n.lineno + 1, f"{p.relative_to(src)}:{n.name}")
                   for p, t in trees if "train" in p.relative_to(src).parts for n in ast.walk(t)
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))))
    m["longest function in train/"] = f"{longest[0]} lines ({longest[1]})"
    m["docstring examples (>>> lines)"] = sum(p.read_text().count(">>> ") for p, _ in trees)
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    addopts = pyproject["tool"]["pytest"]["ini_options"].get("addopts", "")
    m["doctests run by make test"] = "--doctest-modules" in addopts or \
        (root / "tests" / "unit" / "test_doctests.py").exists()
    m["places defining the gpt2-124m shape"] = sum(
        1 for p in src.rglob("*") if p.suffix in (".py", ".toml")
        and re.search(r'^\s*"gpt2-124m"\s*:|^\[gpt2-124m\]',
                      p.read_text(), re.M))
    m["FLOPs-per-token implementations"] = sum(
        1 for _, t in trees for n in ast.walk(t) if isinstance(n, ast.FunctionDef)
        and re.search(r"flops_per_token|forward_flops", n.name))
    return m


def layer_edges(root: Path = ROOT) -> dict[tuple[str, str], int]:
    """How many imports run from each layer to each other layer (own layer left out)."""
    arch = _architecture()
    counts: dict[tuple[str, str], int] = {}
    for e in arch.import_edges(root / "src" / "shoestring"):
        a, b = e.layers()
        if a != b:
            counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout to measure")
    ap.add_argument("--layers", action="store_true", help="print the layer-to-layer imports")
    args = ap.parse_args()
    if args.layers:
        rank = _architecture().LAYERS
        for (a, b), n in sorted(layer_edges(args.root.resolve()).items(),
                                key=lambda kv: (-rank[kv[0][0]], -rank[kv[0][1]])):
            print(f"{a:>10} -> {b:<10} {n}")
        return
    m = measure(args.root.resolve())
    if args.json:
        print(json.dumps(m, indent=1))
        return
    width = max(map(len, m))
    for k, v in m.items():
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
