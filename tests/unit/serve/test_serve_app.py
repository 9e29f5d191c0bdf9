"""The HTTP contract, in process (the real-process tests live in tests/integration)."""

import json
from datetime import datetime, timezone

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from serve_helpers import infer_body, write_run

from shoestring.models.run_folder import load_run
from shoestring.serve.app import serving_app
from shoestring.serve.config import resolve_serve_config
from shoestring.serve.keys import KeyStore
from shoestring.serve.service import Service
from shoestring.serve.usage import usage_summary
from shoestring.serve.usage_log import read_records

PLANS = """
[open]
requests_per_second = 10000
burst = 10000
price_per_1000_units_usd = 2.0
[tight]
requests_per_second = 0.001
burst = 2
price_per_1000_units_usd = 0
[elsewhere]
requests_per_second = 100
burst = 100
price_per_1000_units_usd = 0
models = ["another-model"]
"""
MAY = datetime(2026, 5, 17, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def plans_file(tmp_path):
    p = tmp_path / "plans.toml"
    p.write_text(PLANS)
    return p


def make_service(run_dir, db_url, plans_file, **over) -> Service:
    cfg = resolve_serve_config({"models": [{"run_dir": run_dir}], "db": db_url,
                                "plans": plans_file, "key_cache_seconds": 0,
                                "max_batch_size": 4, "durable": False, **over})
    return Service(cfg, now=lambda: MAY)


@pytest.fixture
def svc(run_dir, db_url, plans_file):
    return make_service(run_dir, db_url, plans_file)


@pytest.fixture
def client(svc):
    with TestClient(serving_app(svc)) as c:
        yield c


def key(svc, plan="open", project="acme", **kw):
    return KeyStore(svc.engine, svc.plans).create(project=project, plan=plan, **kw)


def synced_usage(svc, project, month):
    """The usage report once every answered request is in the SQL ledger."""
    assert svc.sync_ledger(10)
    return usage_summary(svc.engine, project, month)


def auth(secret):
    return {"Authorization": f"Bearer {secret}"}


ROW = [[float(i) for i in range(8)]]


def test_health_and_metadata(client):
    assert client.get("/v2").json()["name"] == "shoestring"
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2/models/tiny").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "label"]
    assert client.get("/v2/models/tiny/versions/1").json()["versions"] == ["1"]
    assert client.get("/v2/models/tiny/ready").status_code == 200
    r = client.get("/v2/models/nope")
    assert r.status_code == 404 and "unknown model 'nope'; served: tiny" in r.json()["error"]
    assert client.get("/v2/models/tiny/versions/9").status_code == 404
    assert "error" in client.get("/no/such/route").json()
    assert client.get("/v2/models/tiny/infer").status_code == 405


def test_infer_applies_the_runs_preprocessing_and_is_metered(client, svc, run_dir):
    secret, info = key(svc)
    r = client.post("/v2/models/tiny/infer", content=infer_body(ROW), headers=auth(secret))
    assert r.status_code == 200, r.text
    doc = r.json()
    probs = np.array(doc["outputs"][0]["data"], dtype=np.float32)
    run = load_run(run_dir)
    with torch.no_grad():  # the stored preprocessing (scale 0.5) applied by the server
        want = torch.softmax(run.model(torch.tensor(ROW) * 0.5), -1).numpy().reshape(-1)
    assert np.allclose(probs, want, atol=1e-6)
    assert doc["outputs"][1]["data"] == [run.card.class_names[int(want.argmax())]]
    assert doc["parameters"]["units"] == 1
    s = synced_usage(svc, "acme", "2026-05")
    assert (s["requests"], s["units"], s["cost_usd"]) == (1, 1, 0.002)
    assert s["keys"][0]["key_id"] == info.id


def test_keys_are_required_and_checked(client, svc):
    url, body = "/v2/models/tiny/infer", infer_body(ROW)
    r = client.post(url, content=body)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert client.post(url, content=body, headers=auth("ss_unknown")).status_code == 401
    assert client.post(url, content=body, headers={"Authorization": "Basic x"}).status_code == 401
    secret, info = key(svc)
    assert client.post(url, content=body, headers=auth(secret)).status_code == 200
    KeyStore(svc.engine, svc.plans).revoke(info.id)
    r = client.post(url, content=body, headers=auth(secret))
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    other, _ = key(svc, plan="elsewhere")
    r = client.post(url, content=body, headers=auth(other))
    assert r.status_code == 403 and "does not include model 'tiny'" in r.json()["error"]


def test_rate_limits_quotas_and_budgets_are_429_with_retry_after(client, svc):
    url, body = "/v2/models/tiny/infer", infer_body(ROW)
    tight, _ = key(svc, plan="tight")
    codes = [client.post(url, content=body, headers=auth(tight)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = client.post(url, content=body, headers=auth(tight))
    assert int(r.headers["retry-after"]) >= 1 and "rate limit" in r.json()["error"]

    quota2, _ = key(svc, monthly_quota_units=2, project="q")
    codes = [client.post(url, content=body, headers=auth(quota2)).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    r = client.post(url, content=body, headers=auth(quota2))
    # Until 2026-06-01T00:00Z from 2026-05-17T12:00Z: 14.5 days.
    assert r.headers["retry-after"] == str(int(14.5 * 86400))
    assert "monthly quota of 2 units" in r.json()["error"]

    secret, _ = key(svc, project="budgeted")
    KeyStore(svc.engine, svc.plans).set_budget("budgeted", 0.004)  # two rows at $2/1000
    codes = [client.post(url, content=body, headers=auth(secret)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert synced_usage(svc, "budgeted", "2026-05")["cost_usd"] == 0.004


def test_idempotent_retries_are_replayed_not_charged(client, svc):
    secret, _ = key(svc)
    h = {**auth(secret), "Idempotency-Key": "order-42"}
    first = client.post("/v2/models/tiny/infer", content=infer_body(ROW), headers=h)
    again = client.post("/v2/models/tiny/infer", content=infer_body(ROW), headers=h)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert synced_usage(svc, "acme", "2026-05")["requests"] == 1
    other = client.post("/v2/models/tiny/infer", content=infer_body([[1.0] * 8]), headers=h)
    assert other.status_code == 422 and "different request" in other.json()["error"]
    bad = client.post("/v2/models/tiny/infer", content=infer_body(ROW),
                      headers={**auth(secret), "Idempotency-Key": "x" * 201})
    assert bad.status_code == 400


def test_a_retry_serialized_differently_is_the_same_request(client, svc):
    """Issue 16 item 9: spacing, newlines, key order and escapes do not make a new request."""
    secret, _ = key(svc)
    h = {**auth(secret), "Idempotency-Key": "order-43"}
    doc = json.loads(infer_body(ROW))
    first = client.post("/v2/models/tiny/infer", content=json.dumps(doc), headers=h)
    pretty = json.dumps(doc, indent=2, ensure_ascii=True).replace('"input"', '"\\u0069nput"')
    reordered = json.dumps({"inputs": [dict(reversed(list(doc["inputs"][0].items())))]})
    for variant in (pretty, reordered, pretty.replace("\n", "\r\n  ")):
        again = client.post("/v2/models/tiny/infer", content=variant, headers=h)
        assert again.status_code == 200, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
    assert synced_usage(svc, "acme", "2026-05")["requests"] == 1


def test_a_release_0_1_idempotency_record_still_matches_its_retry(client, svc):
    """Release 0.1 stored the SHA-256 of the raw body; a retry of such a request replays."""
    import hashlib

    from shoestring.serve.ledger_sql import LedgerSql
    from shoestring.serve.metering import UsageEvent

    secret, info = key(svc)
    body = infer_body(ROW)
    old = hashlib.sha256(b"tiny\n\n" + body).hexdigest()
    LedgerSql(svc.engine, "release-0.1").commit_keyed([UsageEvent(
        id="e-0.1", key_id=info.id, project="acme", plan="open", model="tiny", version="1",
        units=1, cost_nano_usd=2000, latency_ms=1.0, created_at=MAY, idempotency_key="k-0.1",
        request_sha256=old, response_json='{"stored": true}')])
    r = client.post("/v2/models/tiny/infer", content=body,
                    headers={**auth(secret), "Idempotency-Key": "k-0.1"})
    assert r.status_code == 200 and r.json() == {"stored": True}


def test_bodies_must_be_utf8(client, svc):
    secret, _ = key(svc)
    url = "/v2/models/tiny/infer"
    utf16 = infer_body(ROW).decode().encode("utf-16")
    r = client.post(url, content=utf16, headers=auth(secret))
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]
    r = client.post(url, content=infer_body(ROW), headers={
        **auth(secret), "Content-Type": "application/json; charset=utf-16"})
    assert r.status_code == 415 and "UTF-8" in r.json()["error"]
    r = client.post(url, content=infer_body(ROW), headers={
        **auth(secret), "Content-Type": "application/json; charset=UTF-8"})
    assert r.status_code == 200
    assert synced_usage(svc, "acme", "2026-05")["requests"] == 1


def test_bad_bodies_are_4xx_and_not_charged(client, svc):
    secret, _ = key(svc)
    url = "/v2/models/tiny/infer"
    assert client.post(url, content=b"{", headers=auth(secret)).status_code == 400
    r = client.post(url, content=infer_body([[1.0] * 7]), headers=auth(secret))
    assert r.status_code == 400 and "does not match" in r.json()["error"]
    big = b"[" + b"1," * 600_000 + b"1]"
    assert client.post(url, content=big, headers=auth(secret)).status_code == 413
    assert synced_usage(svc, "acme", "2026-05")["requests"] == 0


def test_draining_turns_ready_and_new_requests_to_503(client, svc):
    secret, _ = key(svc)
    svc.begin_drain()
    assert client.get("/v2/health/ready").status_code == 503
    r = client.post("/v2/models/tiny/infer", content=infer_body(ROW), headers=auth(secret))
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "shoestring_draining 1.0" in client.get("/metrics").text


def test_metrics_count_requests_batches_and_units(client, svc):
    secret, _ = key(svc)
    client.post("/v2/models/tiny/infer", content=infer_body(ROW * 3), headers=auth(secret))
    client.post("/v2/models/tiny/infer", content=infer_body(ROW))
    text = client.get("/metrics").text
    assert 'shoestring_requests_total{model="tiny",status="200"} 1.0' in text
    assert 'shoestring_requests_total{model="tiny",status="401"} 1.0' in text
    assert 'shoestring_usage_units_total{model="tiny",plan="open"} 3.0' in text
    assert "shoestring_batch_size_bucket" in text and "shoestring_inflight_requests" in text
    assert "shoestring_request_latency_seconds_bucket" in text


def test_open_mode_needs_no_key_and_meters_nothing(run_dir, db_url, plans_file):
    svc = make_service(run_dir, db_url, plans_file, auth=False)
    with TestClient(serving_app(svc)) as c:
        r = c.post("/v2/models/tiny/infer", content=infer_body(ROW))
    assert r.status_code == 200 and "parameters" not in r.json()
    assert svc.engine is None


def test_versions_share_one_copy_and_regression_models_serve(tmp_path, db_url, plans_file):
    a = write_run(tmp_path / "a")
    reg = write_run(tmp_path / "reg", task="regression", classes=2)
    cfg = resolve_serve_config({"models": [{"run_dir": a, "name": "m", "version": "1"},
                                           {"run_dir": a, "name": "m", "version": "2"},
                                           {"run_dir": reg}],
                                "db": db_url, "plans": plans_file, "auth": False,
                                "max_batch_size": 2})
    svc = Service(cfg)
    assert svc.store.get("m", "1").module is svc.store.get("m", "2").module
    with TestClient(serving_app(svc)) as c:
        assert c.get("/v2/models/m").json()["versions"] == ["1", "2"]
        v1 = c.post("/v2/models/m/versions/1/infer", content=infer_body(ROW)).json()
        latest = c.post("/v2/models/m/infer", content=infer_body(ROW)).json()
        assert latest["model_version"] == "2" and v1["outputs"] == latest["outputs"]
        out = c.post("/v2/models/reg/infer", content=infer_body(ROW * 2)).json()["outputs"]
    assert [(o["name"], o["shape"]) for o in out] == [("prediction", [2, 2])]


def test_requested_outputs_only(client, svc):
    secret, _ = key(svc)
    body = json.loads(infer_body(ROW))
    body["outputs"] = [{"name": "label"}]
    r = client.post("/v2/models/tiny/infer", json=body, headers=auth(secret))
    assert [o["name"] for o in r.json()["outputs"]] == ["label"]


def test_the_documented_route_and_the_fast_path_answer_alike(svc, run_dir, db_url, plans_file):
    from shoestring.serve.app import build_app

    secret, _ = key(svc)
    other = make_service(run_dir, db_url, plans_file)  # a service runs once; same ledger
    with TestClient(build_app(other)) as plain_fastapi:
        a = plain_fastapi.post("/v2/models/tiny/infer", content=infer_body(ROW),
                               headers=auth(secret)).json()
    with TestClient(serving_app(svc)) as fast:
        b = fast.post("/v2/models/tiny/infer", content=infer_body(ROW), headers=auth(secret))
    assert b.headers["content-type"] == "application/json"
    b = b.json()
    assert a["outputs"] == b["outputs"] and a["parameters"]["usage_id"] != \
        b["parameters"]["usage_id"]


def test_an_unreachable_ledger_means_503_and_no_charge(client, svc, monkeypatch):
    """The usage log cannot be written (disk full): 503, nothing charged, units kept."""
    secret, _ = key(svc, monthly_quota_units=1)

    def full(_payloads):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(svc.usage_log, "append", full)
    r = client.post("/v2/models/tiny/infer", content=infer_body(ROW), headers=auth(secret))
    assert r.status_code == 503 and "not charged" in r.json()["error"]
    monkeypatch.undo()
    assert synced_usage(svc, "acme", "2026-05")["requests"] == 0
    # The one unit of quota was given back: the retry gets it.
    assert client.post("/v2/models/tiny/infer", content=infer_body(ROW),
                       headers=auth(secret)).status_code == 200
    assert synced_usage(svc, "acme", "2026-05")["requests"] == 1


def test_keyed_requests_are_503_when_the_database_fails(client, svc, monkeypatch):
    secret, _ = key(svc)

    def down(_events):
        raise RuntimeError("connection refused")

    monkeypatch.setattr(svc.billing.sql, "commit_keyed", down)
    r = client.post("/v2/models/tiny/infer", content=infer_body(ROW),
                    headers={**auth(secret), "Idempotency-Key": "x1"})
    assert r.status_code == 503 and "not charged" in r.json()["error"]
    monkeypatch.undo()
    assert client.post("/v2/models/tiny/infer", content=infer_body(ROW),
                       headers={**auth(secret), "Idempotency-Key": "x1"}).status_code == 200
    assert synced_usage(svc, "acme", "2026-05")["requests"] == 1


def test_without_the_ledger_database_limits_fail_safe(client, svc, monkeypatch):
    """Quotas are money: no lease, no request (503). Rate limits fall back to the process."""
    limited, _ = key(svc, monthly_quota_units=10)
    unlimited, _ = key(svc, project="open-ended")

    def down(*_args):
        raise RuntimeError("connection refused")

    monkeypatch.setattr(svc.billing.sql, "grant", down)
    monkeypatch.setattr(svc.billing.sql, "take_tokens", down)
    r = client.post("/v2/models/tiny/infer", content=infer_body(ROW), headers=auth(limited))
    assert r.status_code == 503 and "ledger is unavailable" in r.json()["error"]
    r = client.post("/v2/models/tiny/infer", content=infer_body(ROW), headers=auth(unlimited))
    assert r.status_code == 200  # logged; recorded once the database is back
    monkeypatch.undo()
    assert synced_usage(svc, "open-ended", "2026-05")["requests"] == 1
    assert synced_usage(svc, "acme", "2026-05")["requests"] == 0


def test_adaptive_mode_sheds_with_503_retry_after_and_a_reason(run_dir, db_url, plans_file):
    # A target no batch can meet (1 µs): every request is predicted late and refused.
    svc = make_service(run_dir, db_url, plans_file, adaptive=True, latency_target_ms=0.001)
    secret, _ = key(svc)
    with TestClient(serving_app(svc)) as c:
        r = c.post("/v2/models/tiny/infer", content=infer_body(ROW), headers=auth(secret))
        text = c.get("/metrics").text
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert r.json()["reason"] == "latency_target" and "exceeds the target" in r.json()["error"]
    assert 'shoestring_shed_total{model="tiny",reason="latency_target"} 1.0' in text
    assert synced_usage(svc, "acme", "2026-05")["requests"] == 0  # not charged


@pytest.mark.parametrize(("inline_batch_ms", "durable", "writer"), [
    (0.0, True, "ss-infer"),       # the inference thread writes its batch's usage itself
    (0.0, False, "ss-infer"),
    (1000.0, False, "loop"),       # an inline batch, not synced: the event loop writes it
    (1000.0, True, "ss-ledger"),   # an inline batch, synced: the writer's group commit
])
def test_a_batch_is_answered_only_after_its_usage_is_in_the_log(run_dir, db_url, plans_file,
                                                                 inline_batch_ms, durable,
                                                                 writer):
    """The usage is written (by the thread that ran the batch, or by the writer thread for
    a synced write from the event loop) before the answer is released."""
    import threading

    svc = make_service(run_dir, db_url, plans_file, inline_batch_ms=inline_batch_ms,
                       durable=durable)
    with TestClient(serving_app(svc)) as c:
        secret, _ = key(svc)
        assert c.post("/v2/models/tiny/infer", content=infer_body(ROW),
                      headers=auth(secret)).status_code == 200  # leases taken
        go, writing, on = threading.Event(), threading.Event(), []
        real = svc.usage_log.append

        def slow_disk(payload):
            on.append(threading.current_thread().name)
            writing.set()
            assert go.wait(10)
            return real(payload)

        svc.usage_log.append = slow_disk
        answered: list = []
        t = threading.Thread(target=lambda: answered.append(c.post(
            "/v2/models/tiny/infer", content=infer_body(ROW), headers=auth(secret))))
        t.start()
        assert writing.wait(10)
        t.join(0.3)
        assert not answered  # the record is not written yet: no answer either
        go.set()
        t.join(10)
        r = answered[0]
        assert r.status_code == 200
        logged = [rec[0] for p in svc.usage_log.segments()
                  for _, group in read_records(p) for rec in group]
        assert r.json()["parameters"]["usage_id"] in logged
        assert on[0].startswith(writer) or writer == "loop" and not on[0].startswith("ss-")
        assert (svc.writer.groups > 0) == (writer == "ss-ledger")
        del svc.usage_log.append
        assert synced_usage(svc, "acme", "2026-05")["requests"] == 2
