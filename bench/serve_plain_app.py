"""The baseline for bench/serve_batching.py: a plain FastAPI endpoint, one forward per request.

What a team writes first: a pydantic request model, the model loaded once, and
an ``async`` handler that runs the forward pass inline (for a model this small
that beats a thread pool, which the ``--sync`` variant uses instead), served by
uvicorn with uvloop and httptools (``uvicorn[standard]``; ``shoestring serve``
uses the same). The same run folder, preprocessing and softmax as the
Shoestring server, no batching, no keys, no metering.

Usage: python bench/serve_plain_app.py RUN_DIR [--sync]   (prints "… at http://HOST:PORT")
"""

from __future__ import annotations

import argparse
import socket
import sys

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from shoestring.models.run_folder import load_run


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferRequest(BaseModel):
    inputs: list[Tensor]


def build(run_dir: str, sync: bool) -> FastAPI:
    run = load_run(run_dir)
    model, pre, names = run.model, run.card.preprocessing.to_preprocessing(), run.card.class_names
    app = FastAPI()

    def forward(req: InferRequest) -> dict:
        t = req.inputs[0]
        x = pre.apply(torch.tensor(t.data, dtype=torch.float32).reshape(t.shape))
        with torch.inference_mode():
            probs = torch.softmax(model(x), dim=-1)
        return {"outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": list(probs.shape),
             "data": probs.reshape(-1).tolist()},
            {"name": "label", "datatype": "BYTES", "shape": [probs.shape[0]],
             "data": [names[i] for i in probs.argmax(-1).tolist()]}]}

    if sync:
        @app.post("/v2/models/{name}/infer")
        def infer_sync(name: str, req: InferRequest) -> dict:
            return forward(req)
    else:
        @app.post("/v2/models/{name}/infer")
        async def infer(name: str, req: InferRequest) -> dict:
            return forward(req)
    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--sync", action="store_true", help="def handler (thread pool)")
    args = p.parse_args()
    torch.set_num_threads(1)  # as the Shoestring server's default
    app = build(args.run_dir, args.sync)
    # IPPROTO_TCP, so asyncio would set TCP_NODELAY too; uvloop sets it anyway.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print(f"Serving plain at http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    # The event loop and parser `shoestring serve` uses, as `uvicorn[standard]` would pick.
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, loop="uvloop",
                                  http="httptools")).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
