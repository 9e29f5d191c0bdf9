"""Run the README's and docs/'s fenced examples as a user would, on tiny data.

Every fenced block in README.md and docs/*.md is one of:

* a **command block** (``bash``, ``sh``, ``console``, or an unlabelled block
  whose first line is a ``shoestring`` command): its commands run, in order,
  in one shell script per document;
* a **Python block**: it runs in that same script, as ``python - <<'PY'``;
* a **TOML block**: it must parse; when the document tells the reader to save
  it under a name, the :class:`Rule` says which, and the file is written;
* any other unlabelled block (file layouts, sample output): shown, not run.

One script per document keeps the state a reader would have: a run trained in
the first block is served in the third, a key created by one command is used
by the next. The differences from a reader's terminal are small and explicit:
the data sets are tiny copies (:data:`GLOBAL_SUBS`), step counts are scaled
down (each :class:`Rule` lists its replacements, and a replacement that no
longer occurs in its block is an error, so a changed document cannot silently
stop being checked), a server runs in the background on a free port, and a
block or line that cannot run here (GPUs, a second node, ``make`` itself) is
skipped with its reason written beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

COMMAND_LANGS = {"bash", "sh", "shell", "console"}

# Replacements made in every block: the tiny data sets stand in for the real ones.
# @FMNIST@ and @PORT@ are filled in by the harness.
GLOBAL_SUBS: tuple[tuple[str, str], ...] = (
    ("/usr/share/datasets/fashion-mnist", "@FMNIST@"),
    ("--data fashion-mnist ", "--data fashion-mnist:@FMNIST@ "),
    ('"source": "fashion-mnist"', '"source": "fashion-mnist:@FMNIST@"'),
    ('source = "fashion-mnist"', 'source = "fashion-mnist:@FMNIST@"'),
    ("../shared/data/shakespeare.txt", "corpus.txt"),
    ("localhost:8000", "127.0.0.1:@PORT@"),
    ("127.0.0.1:8000", "127.0.0.1:@PORT@"),
)

# `shoestring serve ARGS [--port N]` runs in the background until the next one
# (or the end of the document); the harness waits for readiness.
SERVE_LINE = re.compile(r"^(\s*)(?:\.venv/bin/)?shoestring serve (?P<args>.*?)"
                        r"(?:\s+--port \d+)?\s*(?:#.*)?$")


@dataclass(frozen=True)
class Block:
    doc: str          # path relative to the repository root
    line: int         # 1-based line of the opening fence
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def kind(self) -> str:
        first = next((ln.strip() for ln in self.text.splitlines()
                      if ln.strip() and not ln.strip().startswith("#")), "")
        if self.lang in COMMAND_LANGS:
            return "commands"
        if self.lang == "python":
            return "python"
        if self.lang == "toml":
            return "toml"
        if not self.lang and re.match(r"(\$ )?(\.venv/bin/)?shoestring\b", first):
            return "commands"
        return "text"


@dataclass(frozen=True)
class Rule:
    """How one block runs here. ``match`` is a substring found in exactly one block."""

    match: str
    skip: str | None = None                       # the reason the block is not run
    subs: tuple[tuple[str, str], ...] = ()         # (old, new); each must occur
    drop: tuple[tuple[str, str], ...] = ()         # (line substring, reason) not run
    before: str = ""                               # bash run before the block
    after: str = ""                                # bash run after it (checks)
    prelude: str = ""                              # Python: names the fragment assumes
    write: str | None = None                       # TOML: the file the doc names
    expect: tuple[str, ...] = ()                   # substrings the output must hold


@dataclass
class DocPlan:
    setup: str = ""                                # bash run before the first block
    rules: list[Rule] = field(default_factory=list)


def fenced_blocks(root: Path, doc: str) -> list[Block]:
    """The fenced blocks of ``doc`` in order (``` fences at the start of a line)."""
    lines = (root / doc).read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append(Block(doc, start + 1, m.group(1), "\n".join(body) + "\n"))
        i += 1
    return out


def rule_for(block: Block, rules: list[Rule]) -> Rule | None:
    hits = [r for r in rules if r.match in block.text]
    return hits[0] if hits else None


def check_rules(blocks: list[Block], rules: list[Rule]) -> list[str]:
    """Problems with a document's rules: each matches one block, each sub applies."""
    problems = []
    for r in rules:
        hits = [b for b in blocks if r.match in b.text]
        if len(hits) != 1:
            problems.append(f"rule {r.match!r} matches {len(hits)} blocks (want 1)")
            continue
        text = hits[0].text
        for old, _ in r.subs:
            if old not in text:
                problems.append(f"{hits[0].id}: replacement {old!r} no longer occurs; "
                                "update the rule in tests/docs/doc_plans.py")
        for needle, _ in r.drop:
            if needle not in text:
                problems.append(f"{hits[0].id}: dropped line {needle!r} no longer occurs")
        if r.write and hits[0].kind != "toml":
            problems.append(f"{hits[0].id}: 'write' is for TOML blocks")
    return problems


def command_lines(block: Block) -> str:
    """The shell text of a command block (``$ `` prompts removed, output dropped)."""
    if block.lang != "console":
        return block.text
    out, cont = [], False
    for ln in block.text.splitlines():
        if ln.startswith("$ "):
            out.append(ln[2:])
            cont = ln.rstrip().endswith("\\")
        elif cont:
            out.append(ln)
            cont = ln.rstrip().endswith("\\")
    return "\n".join(out) + "\n"


def apply_subs(text: str, subs: tuple[tuple[str, str], ...]) -> str:
    for old, new in subs:
        text = text.replace(old, new)
    return text


def shell_of(block: Block, rule: Rule | None) -> str:
    """The script fragment that runs ``block`` (empty for text)."""
    rule = rule or Rule(match="")
    kind = block.kind
    if kind == "text":
        return ""
    if rule.skip:
        return f"# {block.id} not run here: {rule.skip}\n"
    # a blank line first: the previous example may end its output without a newline
    # (and the seconds since the script started, on stderr: where the time goes)
    marker = f"printf '\\n### %s\\n' '{block.id}'; echo \"{block.id} at $SECONDS s\" >&2\n"
    before = rule.before + "\n" if rule.before else ""
    after = rule.after + "\n" if rule.after else ""
    if kind == "toml":
        if not rule.write:
            return ""
        body = apply_subs(block.text, GLOBAL_SUBS + rule.subs)
        return marker + before + f"cat > {rule.write} <<'TOML'\n{body}TOML\n" + after
    if kind == "python":
        body = apply_subs(block.text, GLOBAL_SUBS + rule.subs)
        code = (rule.prelude + "\n" if rule.prelude else "") + body
        return marker + before + f"python - <<'PY'\n{code}\nPY\n" + after
    text = apply_subs(command_lines(block), GLOBAL_SUBS + rule.subs)
    kept = []
    for ln in _join_continuations(text):
        reason = next((why for needle, why in rule.drop if needle in ln), None)
        if reason:
            kept.append("# not run here (" + reason + "): " + ln.replace("\n", " "))
            continue
        m = SERVE_LINE.match(ln)
        kept.append(f"{m.group(1)}serve_bg {m.group('args')}" if m else ln)
    return marker + before + "\n".join(kept) + "\n" + after


def _join_continuations(text: str) -> list[str]:
    """Lines, with backslash continuations kept together as one logical line."""
    out, cur = [], ""
    for ln in text.splitlines():
        cur = cur + "\n" + ln if cur else ln
        if not ln.rstrip().endswith("\\"):
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out


PRELUDE = r"""
set -euo pipefail
SERVER=
stop_server() {
  if [ -n "$SERVER" ]; then kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" || true; SERVER=; fi
}
trap stop_server EXIT
serve_bg() {
  stop_server
  shoestring serve "$@" --port "$PORT" > serve.log 2>&1 &
  SERVER=$!
  for _ in $(seq 1 300); do
    if command curl -sf "http://127.0.0.1:$PORT/v2/health/ready" > /dev/null; then return 0; fi
    if ! kill -0 "$SERVER" 2>/dev/null; then echo "server exited:"; cat serve.log; return 1; fi
    sleep 0.2
  done
  echo "server not ready after 60 s:"; cat serve.log; return 1
}
# An HTTP error fails the example (curl -s alone would print it and succeed).
curl() { command curl --fail-with-body "$@"; }
"""
