"""Decoded arrays cached on disk and memory-mapped on reuse.

Decoding is a fixed cost paid by every run: gunzipping and parsing
Fashion-MNIST's IDX files takes about 0.6 s, as long as training the seed MLP
to its target. The first run writes the decoded arrays as ``.npy`` files into
an entry named by a content key (the SHA-256 of the source files' paths, sizes
and modification times and of the loader's settings: editing, replacing or
touching a source gives a new key, so a stale entry is never read, as in
:mod:`shoestring.data.text_cache`). Later runs map the files copy-on-write and
check each against the SHA-256 recorded when it was written, so a damaged
entry is rebuilt instead of trained on.

Entries are written to a private temporary folder and renamed into place, so
concurrent runs never see half an entry; writing a new version of a source's
entry removes the older versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from shoestring.io import atomic_write_bytes

FORMAT = "shoestring.arrays/1"
META = "meta.json"


def default_array_cache(workspace: Path) -> Path:
    """``WORKSPACE/.shoestring/cache/arrays``, beside the token cache."""
    return Path(workspace) / ".shoestring" / "cache" / "arrays"


def cache_key(sources: list[Path], settings: dict) -> str:
    """The key of these source files' current versions decoded with ``settings``."""
    files = []
    for p in sources:
        st = Path(p).stat()
        files.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    payload = {"format": FORMAT, "settings": settings, "files": files}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()


def _read(entry: Path) -> tuple[dict[str, np.ndarray] | None, str | None]:
    try:
        meta = json.loads((entry / META).read_text())
        if meta.get("format") != FORMAT:
            return None, "from another version"
        arrays = {}
        for name, info in meta["arrays"].items():
            # Copy-on-write: pages are shared with the file until written.
            arr = np.load(entry / f"{name}.npy", mmap_mode="c", allow_pickle=False)
            if _sha256(arr) != info["sha256"]:
                return None, f"'{name}.npy' failed its checksum"
            arrays[name] = arr
        return arrays, None
    except (FileNotFoundError, NotADirectoryError):  # no entry (yet)
        return None, None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"unreadable ({exc})"


def _write(root: Path, key: str, arrays: dict[str, np.ndarray], sources: list[Path]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        meta = {"format": FORMAT, "sources": sorted(str(Path(p).resolve()) for p in sources),
                "arrays": {}}
        for name, arr in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as f:
                np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            meta["arrays"][name] = {"sha256": _sha256(arr), "shape": list(arr.shape),
                                    "dtype": arr.dtype.str}
        atomic_write_bytes(tmp / META, json.dumps(meta, indent=2).encode())
        try:
            tmp.rename(root / key)
        except OSError:  # another run finished the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        _drop_older_versions(root, key, meta["sources"])
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _drop_older_versions(root: Path, key: str, sources: list[str]) -> None:
    for other in root.iterdir():
        if other.name == key or other.name.startswith("."):
            continue
        try:
            if json.loads((other / META).read_text()).get("sources") == sources:
                shutil.rmtree(other, ignore_errors=True)
        except (OSError, ValueError):
            continue


def cached_arrays(cache_dir: Path | None, sources: list[Path], settings: dict,
                  build: Callable[[], dict[str, np.ndarray]],
                  log: Callable[[str], None] = lambda message: None) -> dict[str, np.ndarray]:
    """``build()``'s arrays, from the cache when these sources were decoded before.

    Without ``cache_dir`` this is ``build()``. A cache that cannot be written
    (read-only disk, full disk) costs nothing but the saving.
    """
    if cache_dir is None:
        return build()
    key = cache_key(sources, settings)
    arrays, why = _read(cache_dir / key)
    if arrays is not None:
        return arrays
    if why:
        log(f"array cache '{cache_dir / key}' {why}; rebuilt it")
        shutil.rmtree(cache_dir / key, ignore_errors=True)
    arrays = build()
    try:
        _write(cache_dir, key, arrays, sources)
    except OSError as exc:
        log(f"array cache not written ({exc}); the data will be decoded again next time")
    return arrays
