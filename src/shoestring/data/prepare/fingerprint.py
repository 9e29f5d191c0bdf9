"""Content addressing: the key of a preparation is a hash of what decides its output.

The key is SHA-256 over the format version, the canonical JSON of the
options that change the result (:meth:`PrepareConfig.key_fields`), a
fingerprint of the PII secret when one is used, and every input file's
relative name, size and content (streamed, so large inputs cost I/O, not
memory). Same key, same output: a second ``prepare`` with the same inputs and
options reuses the folder instead of recomputing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

# Bump when the prepared layout or any decision rule changes.
PREPARE_VERSION = "2"  # 2: paragraphs for text:, short units exempt, cleanlab label issues


def _common_root(files: Sequence[Path]) -> Path | None:
    if not files:
        return None
    return Path(os.path.commonpath([str(f.resolve().parent) for f in files]))


def content_key(files: Sequence[Path], options: dict, extra: dict | None = None) -> str:
    h = hashlib.sha256()
    h.update(f"shoestring-prepare/{PREPARE_VERSION}\n".encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    h.update(json.dumps(extra or {}, sort_keys=True).encode())
    root = _common_root(files)
    for f in sorted(files, key=lambda p: str(p)):
        rel = str(f.resolve().relative_to(root)) if root else str(f)
        h.update(f"\n{rel}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
