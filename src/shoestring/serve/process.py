"""``shoestring serve`` as a child process: start, wait for its URL, stop or kill it.

Used by the integration tests and the benchmarks (which must exercise the real
entry point), and handy in notebooks.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from shoestring.errors import ShoestringError

# Runs the real console entry point without depending on the script's location.
CLI = "import sys; from shoestring.cli.main import run; sys.argv[0] = 'shoestring'; run()"


class ServerProcess:
    """``shoestring [global args] serve ARGS`` in a child process.

    >>> # with ServerProcess(["serve", "runs/digits", "--port", "0"]) as srv:
    >>> #     srv.url  -> 'http://127.0.0.1:PORT'
    """

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None,
                 cwd: Path | None = None, start_timeout_s: float = 120.0) -> None:
        self.args, self.cwd, self.start_timeout_s = args, cwd, start_timeout_s
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="shoestring-serve-", suffix=".log",
                                                delete=False)

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.url.rsplit("/", 1)[-1].rsplit(":", 1)
        return host, int(port)

    def start(self) -> str:
        self.proc = subprocess.Popen([sys.executable, "-c", CLI, *self.args], cwd=self.cwd,
                                     env=self.env, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line is None:
                break
            if " at http://" in line:
                self.url = line.split(" at ", 1)[1].split(" ", 1)[0]
                return self.url
        self.kill()
        raise ShoestringError(f"the server did not start: {self.log_tail()}",
                              hint="run the same 'shoestring serve' command by hand")

    def _pump(self, lines: queue.Queue) -> None:
        for line in self.proc.stdout:
            lines.put(line)
        lines.put(None)

    def log_tail(self, chars: int = 3000) -> str:
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (drain), then wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: no drain, no flush (what a crash looks like)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        try:
            os.unlink(self._log.name)
        except OSError:
            pass
