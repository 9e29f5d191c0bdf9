"""Native thread names, so ``top -H``, ``ps -L`` and the benches can tell the server's threads
apart (Python before 3.14 leaves every thread named like the process).

Linux only (``prctl(PR_SET_NAME)``, at most 15 bytes, prctl(2)); elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

PR_SET_NAME = 15  # linux/prctl.h
_libc = None


def name_native_thread(name: str | None = None) -> None:
    """Give the calling thread the native name ``name`` (default: its Python name)."""
    global _libc
    if not sys.platform.startswith("linux"):
        return
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        raw = (name or threading.current_thread().name).encode()[:15]
        _libc.prctl(PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0)
    except (OSError, AttributeError):  # no libc to call: names are only for observers
        pass
