"""README.md and every docs/ example, run as written (scaled down, on tiny data).

Issue 16: commands documented in the README and docs/ had drifted from the
code. Here each document's fenced blocks run in order in one shell script in a
fresh folder (see doc_examples.py), so an example that no longer works fails
the suite, naming the block.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from doc_examples import PRELUDE, check_rules, fenced_blocks, rule_for, shell_of
from doc_plans import PLANS
from idx_files import write_idx_dir

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
BIN = Path(sys.executable).parent


def test_every_rule_still_matches_its_document():
    problems = []
    for doc in DOCS:
        plan = PLANS.get(doc)
        if plan:
            problems += [f"{doc}: {p}" for p in check_rules(fenced_blocks(ROOT, doc), plan.rules)]
    assert not problems, "\n".join(problems)


def test_every_toml_example_parses():
    bad = []
    for doc in DOCS:
        for b in fenced_blocks(ROOT, doc):
            if b.kind == "toml":
                try:
                    tomllib.loads(b.text)
                except tomllib.TOMLDecodeError as exc:
                    bad.append(f"{b.id}: {exc}")
    assert not bad, "\n".join(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_tiny_data(folder: Path) -> Path:
    """The data sets the documents name, tiny: Fashion-MNIST-shaped IDX files,
    a character corpus, and the JSONL/CSV files of docs/data.md."""
    fmnist = write_idx_dir(folder / "fmnist", n_train=400, n_test=200, side=28, classes=10)
    rng = random.Random(0)
    words = "the king my lord good sir thou art what say you to this night fair".split()
    speeches = [f"{rng.choice(['ROMEO', 'JULIET', 'NURSE'])}:\n"
                + " ".join(rng.choice(words) for _ in range(rng.randint(8, 30))) + "\n"
                for _ in range(400)]
    (folder / "corpus.txt").write_text("\n".join(speeches))
    reviews = [{"text": f"{' '.join(rng.choice(words) for _ in range(12))} call 555-0{i:03d}",
                "stars": rng.randint(1, 5)} for i in range(120)]
    reviews += reviews[:10]                                     # exact duplicates
    (folder / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    docs = [{"text": " ".join(rng.choice(words) for _ in range(10)), "label": rng.choice("ab")}
            for _ in range(80)]
    (folder / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in docs + docs[:5]))
    rows = ["rooms,area,price"] + [f"{r},{40 + 12 * r + rng.randint(0, 9)},"
                                   f"{50_000 + 30_000 * r + rng.randint(0, 9_999)}"
                                   for r in (rng.randint(1, 8) for _ in range(150))]
    (folder / "houses.csv").write_text("\n".join(rows + ["99,5,1"]) + "\n")
    return fmnist


def _script(doc: str, folder: Path, port: int, fmnist: Path) -> str:
    plan = PLANS.get(doc)
    rules = plan.rules if plan else []
    parts = [PRELUDE, (plan.setup if plan else "")]
    parts += [shell_of(b, rule_for(b, rules)) for b in fenced_blocks(ROOT, doc)]
    return "\n".join(parts).replace("@FMNIST@", str(fmnist)).replace("@PORT@", str(port))


def _sections(stdout: str) -> dict[str, str]:
    out, current = {}, None
    for line in stdout.splitlines(keepends=True):
        if line.startswith("### "):
            current = line[4:].strip()
            out[current] = ""
        elif current:
            out[current] += line
    return out


# A whole document's examples run as processes one after another (compress.md
# takes minutes on a loaded 2-core machine): the script's own limit applies.
@pytest.mark.timeout(1000)
@pytest.mark.parametrize("doc", DOCS)
def test_documented_examples_run(doc, tmp_path):
    folder = tmp_path / "reader"
    folder.mkdir()
    fmnist = _write_tiny_data(folder)
    venv = folder / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "shoestring").symlink_to(BIN / "shoestring")
    port = _free_port()
    script = _script(doc, folder, port, fmnist)
    (folder / "examples.sh").write_text(script)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "PORT": str(port),
           "SHOESTRING_DB": f"sqlite:///{folder / 'ledger.db'}",
           # one thread each: the examples are tiny and the suite may share its cores
           "OMP_NUM_THREADS": "1"}
    env.pop("SHOESTRING_PRICE_PER_HOUR", None)
    proc = subprocess.run(["bash", "examples.sh"], cwd=folder, env=env, text=True,
                          capture_output=True, timeout=900)
    (folder / "timing.txt").write_text("\n".join(
        ln for ln in proc.stderr.splitlines() if " at " in ln and ln.endswith(" s")))
    sections = _sections(proc.stdout)
    failed = next(reversed(sections), "setup") if sections else "setup"
    assert proc.returncode == 0, (
        f"{doc}: the example at {failed} failed (exit {proc.returncode}); the script is "
        f"{folder / 'examples.sh'}\n--- stdout (end)\n{proc.stdout[-3000:]}\n"
        f"--- stderr (end)\n{proc.stderr[-3000:]}")
    plan = PLANS.get(doc)
    for b in fenced_blocks(ROOT, doc):
        rule = rule_for(b, plan.rules) if plan else None
        for needle in (rule.expect if rule else ()):
            assert needle in sections.get(b.id, ""), \
                f"{b.id}: output lacks {needle!r}:\n{sections.get(b.id, '')[-2000:]}"
    shutil.rmtree(folder / "fmnist", ignore_errors=True)
