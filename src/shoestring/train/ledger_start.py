"""Opening the run ledger while the data loads.

Opening the ledger costs more than writing to it: SQLAlchemy's import alone
takes about 0.3 s (1 s on a loaded 2-core machine), a quarter of training the
seed MLP to its target. Given a way to open the ledger rather than an open
one, :func:`~shoestring.train.api.train` opens it on a worker thread while the
data loads: loading is dominated by large array operations (checksums,
conversions, statistics) that release the GIL, so the import runs beside them.
The run waits for the ledger, and sees its errors, before training starts.
"""

from __future__ import annotations

import threading
from typing import Any, Callable


class OpeningLedger:
    """``open_ledger()`` on a worker thread; :meth:`get` waits for it."""

    def __init__(self, open_ledger: Callable[[], Any]) -> None:
        self._ledger: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(open_ledger,),
                                        name="shoestring-ledger", daemon=True)
        self._thread.start()

    def _run(self, open_ledger: Callable[[], Any]) -> None:
        try:
            self._ledger = open_ledger()
        except BaseException as exc:  # raised in the caller's thread by get()
            self._error = exc

    def get(self) -> Any:
        """The open ledger; raises what opening it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._ledger

    def close(self) -> None:
        self._thread.join()
        if self._ledger is not None:
            self._ledger.close()
