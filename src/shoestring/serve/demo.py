"""The quickstart's serving step: serve a run in-process, make a paid request, read the meter."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from shoestring.errors import ShoestringError
from shoestring.ledger.db import open_ledger
from shoestring.serve.app import serving_app
from shoestring.serve.config import resolve_serve_config
from shoestring.serve.keys import KeyStore
from shoestring.serve.metering import period_of
from shoestring.serve.server import bind, url_of, uvicorn_config
from shoestring.serve.service import Service
from shoestring.serve.usage import usage_summary, utc_now

DEMO_PROJECT = "quickstart-demo"


def serve_demo(run_dir: Path, db_url: str, *, rows: Sequence[Sequence[float]] | None = None,
               plan: str = "free", start_timeout_s: float = 60.0) -> dict[str, Any]:
    """Start a server on 127.0.0.1, create a demo key, make one request, return the usage.

    ``rows`` are raw input rows (default: one row of zeros of the model's input
    size). Returns the URL, model name, the key's shown prefix, the predicted
    labels (or values), the usage event id and the metered usage of the key
    this month (``requests``, ``units``, ``cost_usd``). The server is stopped
    before returning.
    """
    cfg = resolve_serve_config({"models": [{"run_dir": Path(run_dir)}], "db": db_url,
                                "port": 0, "key_cache_seconds": 0})
    service = Service(cfg)
    model = service.store.all()[0]
    secret, key = KeyStore(service.engine, service.plans).create(
        project=DEMO_PROJECT, plan=plan, label="quickstart demo")
    sock = bind("127.0.0.1", 0)
    url = url_of(sock)
    server = uvicorn.Server(uvicorn_config(serving_app(service), cfg))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="shoestring-demo-server", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread, start_timeout_s)
        data = [list(r) for r in rows] if rows is not None else \
            [[0.0] * len(model.example_input(1).reshape(-1))]
        body = {"inputs": [{"name": model.input.name, "datatype": "FP32",
                            "shape": [len(data), *model.input.shape],
                            "data": [v for r in data for v in r]}]}
        resp = httpx.post(f"{url}/v2/models/{model.name}/infer", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {secret}"})
        if resp.status_code != 200:
            raise ShoestringError(f"the demo request failed with {resp.status_code}: "
                                  f"{resp.text}", hint="run 'shoestring serve' by hand")
        doc = resp.json()
    finally:
        server.should_exit = True
        thread.join(start_timeout_s)
        sock.close()
    outputs = {o["name"]: o["data"] for o in doc["outputs"]}
    engine = open_ledger(db_url)
    try:
        summary = usage_summary(engine, DEMO_PROJECT, period_of(utc_now()))
    finally:
        engine.dispose()
    mine = next((k for k in summary["keys"] if k["key_id"] == key.id),
                {"requests": 0, "units": 0, "cost_usd": 0.0})
    return {"url": url, "model": model.name, "key_prefix": key.prefix, "plan": plan,
            "prediction": outputs.get("label", outputs.get("prediction")),
            "usage_id": doc["parameters"]["usage_id"],
            "usage": {"project": DEMO_PROJECT, "month": summary["month"],
                      "requests": mine["requests"], "units": mine["units"],
                      "cost_usd": mine["cost_usd"]}}


def _wait_started(server: uvicorn.Server, thread: threading.Thread, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ShoestringError("the demo server did not start",
                                  hint="run 'shoestring serve RUN_DIR' to see its errors")
        time.sleep(0.02)
