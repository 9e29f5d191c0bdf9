"""Text models served with BYTES inputs: a trained encoder classifier and a tiny GPT."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shoestring.serve.app import serving_app
from shoestring.serve.config import resolve_serve_config
from shoestring.serve.keys import KeyStore
from shoestring.serve.metering import period_of
from shoestring.serve.service import Service
from shoestring.serve.usage import usage_summary, utc_now


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    from shoestring.train.api import train
    from shoestring.train.config import resolve_config

    root = tmp_path_factory.mktemp("text")
    rng = random.Random(0)
    rows = [{"text": rng.choice(["great movie", "loved it", "wonderful"]) if i % 2 else
             rng.choice(["awful", "boring film", "hated it"]), "label": "pos" if i % 2 else "neg"}
            for i in range(60)]
    (root / "reviews.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (root / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 100)
    train(resolve_config({"model": {"name": "bert-tiny"}, "train": {"epochs": 2},
                          "data": {"source": f"jsonl:{root / 'reviews.jsonl'}"},
                          "out": str(root / "sentiment")}))
    train(resolve_config({"model": {"name": "gpt-nano"}, "train": {"max_steps": 20,
                                                                   "batch_size": 8},
                          "data": {"source": f"text:{root / 'corpus.txt'}"},
                          "out": str(root / "fox")}))
    return {"sentiment": root / "sentiment", "fox": root / "fox", "root": root}


def test_text_models_take_bytes_inputs_and_are_metered(runs):
    db = f"sqlite:///{runs['root'] / 'ledger.db'}"
    cfg = resolve_serve_config({"models": [{"run_dir": runs["sentiment"]},
                                           {"run_dir": runs["fox"]}],
                                "db": db, "max_batch_size": 4, "max_new_tokens": 8,
                                "key_cache_seconds": 0})
    svc = Service(cfg)
    secret, _ = KeyStore(svc.engine, svc.plans).create(project="words", plan="pro")
    h = {"Authorization": f"Bearer {secret}"}
    with TestClient(serving_app(svc)) as c:
        meta = c.get("/v2/models/sentiment").json()
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                            "data": ["loved it", "boring film"]}]}
        r = c.post("/v2/models/sentiment/infer", json=body, headers=h)
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}
        assert out["probabilities"]["shape"] == [2, 2]
        assert set(out["label"]["data"]) <= {"pos", "neg"}
        numbers = {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
        bad = c.post("/v2/models/sentiment/infer", json=numbers, headers=h)
        assert bad.status_code == 400 and "expected BYTES" in bad.json()["error"]
        gen = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                           "data": ["the quick "]}]}
        first = c.post("/v2/models/fox/infer", json=gen, headers=h).json()
        again = c.post("/v2/models/fox/infer", json=gen, headers=h).json()
        (text,) = first["outputs"][0]["data"]
        assert isinstance(text, str) and text == again["outputs"][0]["data"][0]  # greedy
        # The corpus has no 'Z': the char tokenizer refuses it, for this request only.
        gen["inputs"][0]["data"] = ["Zebra"]
        refused = c.post("/v2/models/fox/infer", json=gen, headers=h)
        assert refused.status_code == 400 and "not in the char tokenizer" in refused.text
    s = usage_summary(svc.engine, "words", period_of(utc_now()))
    assert (s["requests"], s["units"]) == (3, 4)  # 2 texts + 1 prompt + 1 prompt
