"""A headless Chromium driven over the DevTools protocol, for tests that open pages.

The browser is Debian's ``chromium`` (``scripts/ci-chromium.sh`` finds it or installs
it); it is driven through ``--remote-debugging-pipe`` (JSON messages ending in NUL on
file descriptors 3 and 4), so no port is opened and no client library is needed.
(A unique module name: tests/ has no packages.)

:meth:`Chromium.open` loads a URL and records what a reviewer checks: console
messages and uncaught exceptions, every network request the page made, and the
plots on the page (each ``figure.plot``'s SVG size and drawn paths).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ci-chromium.sh"


def find_chromium() -> tuple[str | None, str]:
    """(path, '') of a Chromium binary, installing Debian's where allowed; else (None, why)."""
    env = os.environ.get("SHOESTRING_CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env), ""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name), ""
    if os.environ.get("CI") == "true":
        done = subprocess.run([str(SCRIPT)], check=False, capture_output=True, text=True, timeout=900)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip(), ""
        return None, f"scripts/ci-chromium.sh could not install chromium: {done.stderr[-500:]}"
    return None, ("no chromium on PATH (apt-get install chromium, or run "
                  "scripts/ci-chromium.sh as root; CI=true installs it)")


# What the page reports about its plots, evaluated in the page after it loads.
PLOTS_JS = """
Array.from(document.querySelectorAll('figure.plot')).map(f => {
  const svg = f.querySelector('svg');
  const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const paths = svg ? Array.from(svg.querySelectorAll('path'))
      .filter(p => (p.getAttribute('d') || '').length > 2) : [];
  const lines = svg ? svg.querySelectorAll('g[id*="line2d"] path, g[id*="patch"] path,'
      + ' g[id*="PathCollection"] path, g[id*="PathCollection"] use').length : 0;
  return {name: f.dataset.plot, width: r.width, height: r.height, paths: paths.length,
          marks: lines, texts: svg ? svg.querySelectorAll('text').length : 0,
          caption: (f.querySelector('figcaption') || {}).textContent || ''};
})
"""


@dataclass
class PageVisit:
    url: str
    console: list[dict[str, Any]] = field(default_factory=list)   # {level, text}
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    plots: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""
    status: int | None = None

    def errors(self) -> list[str]:
        return [f"console {m['level']}: {m['text']}" for m in self.console
                if m["level"] in ("error", "warning")] + self.exceptions + \
            [f"request failed: {u}" for u in self.failed]


class Chromium:
    """One headless Chromium process; use as a context manager."""

    def __init__(self, binary: str, *, width: int = 1280, height: int = 900) -> None:
        self.binary, self.width, self.height = binary, width, height
        self.profile = tempfile.mkdtemp(prefix="shoestring-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        flags = ["--headless", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                 "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-extensions", "--disable-default-apps",
                 "--mute-audio", "--hide-scrollbars", f"--window-size={width},{height}"]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")   # Chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(
            # bash, not sh: dash takes single-digit descriptors only (pytest's capture
            # leaves ours above 9).
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}',
             binary, *flags, "about:blank"],
            pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self.events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg and msg["id"] in self._replies:
                    self._replies[msg["id"]].put(msg)
                else:
                    self.events.put(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            mid = self._next_id
            box: queue.Queue = queue.Queue()
            self._replies[mid] = box
            msg = {"id": mid, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        try:
            reply = box.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no reply to {method} within {timeout} s") from None
        finally:
            self._replies.pop(mid, None)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url: str, *, screenshot: Path | None = None, timeout: float = 60,
             headers: dict[str, str] | None = None) -> PageVisit:
        """Load ``url`` in a new tab; record console, requests and plots; screenshot it."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        visit = PageVisit(url)
        try:
            for domain in ("Runtime", "Log", "Network", "Page"):
                self.send(f"{domain}.enable", session=session)
            if headers:
                self.send("Network.setExtraHTTPHeaders", {"headers": headers}, session=session)
            self.send("Page.navigate", {"url": url}, session=session)
            self._pump(visit, session, until="Page.loadEventFired", timeout=timeout)
            self._pump(visit, session, until=None, timeout=0.3)   # late console messages
            plots = self.send("Runtime.evaluate", {"expression": PLOTS_JS,
                                                   "returnByValue": True}, session=session)
            visit.plots = plots["result"].get("value") or []
            visit.title = self.send("Runtime.evaluate", {"expression": "document.title",
                                                         "returnByValue": True},
                                    session=session)["result"].get("value", "")
            if screenshot is not None:
                self._screenshot(session, screenshot)
        finally:
            self.send("Target.closeTarget", {"targetId": target})
        return visit

    def _screenshot(self, session: str, path: Path) -> None:
        metrics = self.send("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = min(int(size["height"]) + 1, 16000)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": height, "deviceScaleFactor": 1,
                   "mobile": False}, session=session)
        shot = self.send("Page.captureScreenshot", {"format": "png"}, session=session)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def _pump(self, visit: PageVisit, session: str, until: str | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if until is None:
                    return
                raise TimeoutError(f"{visit.url}: no {until} within {timeout} s")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev.get("sessionId") != session:
                continue
            method, p = ev.get("method"), ev.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", "")))
                                for a in p.get("args", []))
                visit.console.append({"level": p.get("type"), "text": text})
            elif method == "Log.entryAdded":
                e = p["entry"]
                visit.console.append({"level": e.get("level"), "text": e.get("text", "")})
            elif method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                visit.exceptions.append(f"{d.get('text', 'exception')} "
                                        f"{(d.get('exception') or {}).get('description', '')}")
            elif method == "Network.requestWillBeSent":
                visit.requests.append(p["request"]["url"])
            elif method == "Network.responseReceived" and p.get("type") == "Document":
                visit.status = p["response"].get("status")
            elif method == "Network.loadingFailed":
                visit.failed.append(p.get("errorText", "?"))
            if method == until:
                return
