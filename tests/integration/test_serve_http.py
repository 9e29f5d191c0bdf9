"""The HTTP layer of a real `shoestring serve` process, seen by standard clients."""

from __future__ import annotations

import http.client
import json
import statistics
import time
from pathlib import Path

import pytest

from shoestring.serve.process import ServerProcess

BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                               "data": [float(i % 17) for i in range(64)]}]})
PATH = "/v2/models/digits/infer"


def open_server(run_dir: Path, tmp_path: Path, *extra: str) -> ServerProcess:
    return ServerProcess(["--db", f"sqlite:///{tmp_path / 'ledger.db'}", "serve", str(run_dir),
                          "--port", "0", "--no-auth", *extra])


# asyncio sets TCP_NODELAY only on sockets made with IPPROTO_TCP and uvloop always does:
# the asyncio loop shows whether the server sets it itself.
@pytest.mark.parametrize("loop", ["asyncio", "auto"])
def test_keep_alive_requests_are_not_held_back_by_nagle(digits_run_dir, tmp_path, loop):
    """20 sequential requests on one keep-alive connection: median well under Nagle's 40 ms."""
    with open_server(digits_run_dir, tmp_path, "--event-loop", loop) as srv:
        conn = http.client.HTTPConnection(*srv.host_port, timeout=30)
        conn.request("GET", "/v2/health/ready")  # connect and warm up outside the timing
        conn.getresponse().read()
        sock, times = conn.sock, []
        for _ in range(20):
            t0 = time.perf_counter()
            conn.request("POST", PATH, BODY, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            times.append(time.perf_counter() - t0)
            assert resp.status == 200
        assert conn.sock is sock  # every request used the one connection
        conn.close()
    median_ms = statistics.median(times) * 1000
    print(f"\nkeep-alive ({loop} loop): median {median_ms:.2f} ms, max "
          f"{max(times) * 1000:.2f} ms over 20 requests")
    assert median_ms < 10, f"median {median_ms:.1f} ms: responses wait for delayed ACKs"
