"""Schema-driven fuzzing of a real server: no generated request may cause a 5xx.

Schemathesis reads the server's OpenAPI document and generates requests for
every operation (valid and invalid bodies, odd headers). Path parameters are
pinned to the served model so that bodies reach the parser and the model.
"""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from shoestring.ledger.db import open_ledger
from shoestring.serve.keys import KeyStore
from shoestring.serve.plans import load_plans
from shoestring.serve.process import ServerProcess

PLANS = """
[bulk]
requests_per_second = 100000
burst = 100000
price_per_1000_units_usd = 0.1
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from shoestring.train.api import train
    from shoestring.train.config import resolve_config

    root = tmp_path_factory.mktemp("fuzz")
    run = root / "digits"
    train(resolve_config({"data": {"source": "digits"}, "train": {"epochs": 1}, "out": str(run)}),
          ledger=None)
    plans = root / "plans.toml"
    plans.write_text(PLANS)
    db = f"sqlite:///{root / 'ledger.db'}"
    secret, _ = KeyStore(open_ledger(db), load_plans(plans)).create(
        project="fuzz", plan="bulk")
    with ServerProcess(["--db", db, "serve", str(run), "--port", "0", "--plans", str(plans),
                        "--max-rows-per-request", "16", "--max-body-bytes", "65536"]) as srv:
        yield srv, secret


def _fuzz(strategy, label: str, pinned: dict, url: str, secret: str, checked: dict) -> None:
    @given(case=strategy)
    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case):
        if pinned:  # negative mode may mangle them; keep bodies reaching the model
            case.path_parameters = {**(case.path_parameters or {}), **pinned}
        response = case.call(base_url=url, headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code < 500, (label, response.text[:300])
        if response.status_code >= 400:
            assert "error" in response.json()  # every refusal says why, as JSON
        checked[label] = checked.get(label, 0) + 1

    check()


def test_no_generated_request_gets_a_5xx(server):
    """Valid (positive) and schema-violating (negative) cases for every operation."""
    srv, secret = server
    schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
    checked: dict[str, int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        pinned = {k: v for k, v in (("model_name", "digits"), ("model_version", "1"))
                  if k in op.path}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = op.as_strategy(generation_mode=mode, path_parameters=pinned or None)
            try:
                _fuzz(strategy, op.label, pinned, srv.url, secret, checked)
            except Unsatisfiable:  # nothing to violate (e.g. GET /v2 takes no input)
                assert mode is GenerationMode.NEGATIVE, op.label
    assert any("infer" in label for label in checked) and len(checked) >= 8
    print(f"\nschemathesis: {sum(checked.values())} generated requests over {checked}, "
          f"{len(checked)} operations, no 5xx")


def test_the_schema_documents_the_inference_routes(server):
    srv, _ = server
    paths = httpx.get(f"{srv.url}/openapi.json").json()["paths"]
    versioned = "/v2/models/{model_name}/versions/{model_version}/infer"
    assert {"/v2/models/{model_name}/infer", versioned, "/v2/health/ready"} <= set(paths)
    body = paths["/v2/models/{model_name}/infer"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["required"] == ["inputs"]


def test_a_valid_request_still_works_after_fuzzing(server):
    srv, secret = server
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                        "data": [0.0] * 64}]}
    r = httpx.post(f"{srv.url}/v2/models/digits/infer", json=body,
                   headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200 and json.loads(r.text)["outputs"][1]["name"] == "label"
