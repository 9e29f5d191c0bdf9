"""``shoestring ui``: pages from the ledger, serving views, read-only, admin tokens."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from dashboard_ledger import PERIOD, fill_ledger
from report_runs import write_run
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from shoestring.cli.main import build_cli
from shoestring.report.admin_tokens import AdminTokens
from shoestring.report.dashboard import Dashboard, create_app, is_loopback, read_only_engine
from shoestring.report.serving import serving_view


@pytest.fixture
def ledger(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    runs = [write_run(tmp_path / "runs" / n, steps=20) for n in ("a", "b")]
    return url, fill_ledger(url, runs)


def client(url, tmp_path, require_token=False):
    dash = Dashboard(read_only_engine(url), tmp_path, require_token=require_token,
                     plan_quotas={"pro": 1_000_000, "free": 100})
    return TestClient(create_app(dash))


def test_serving_view_sums_the_metered_requests(ledger):
    url, made = ledger
    v = serving_view(read_only_engine(url), PERIOD, {"pro": 1_000_000, "free": 100})
    assert [(d["day"], d["project"], d["requests"], d["units"]) for d in v.daily] == [
        ("2026-11-01", "acme", 5, 50), ("2026-11-02", "acme", 8, 80),
        ("2026-11-02", "beta", 3, 30), ("2026-11-03", "beta", 4, 40)]
    quota = {q["project"]: q for q in v.quotas}
    assert quota["beta"]["units"] == 70 and quota["beta"]["used_fraction"] == pytest.approx(0.7)
    inv = {i["project"]: i for i in v.invoices}
    assert inv["acme"]["total_usd"] == pytest.approx(13 * 0.005) and inv["beta"]["total_usd"] == 0
    lat = {x["project"]: x for x in v.latency}
    # acme's latencies: 2..6 and 2..9 ms; numpy's linear percentile of those 13 values
    assert lat["acme"]["requests"] == 13 and lat["acme"]["p50_ms"] == pytest.approx(5.0)
    assert serving_view(read_only_engine(url), "2026-10").daily == []


def test_pages_on_loopback(ledger, tmp_path):
    url, made = ledger
    c = client(url, tmp_path)
    r = c.get("/")
    assert r.status_code == 200 and r.text.count('type="checkbox"') == 2
    a, b = made["run_ids"]
    r = c.get(f"/runs/{a}")
    assert r.status_code == 200 and 'data-plot="training-loss-by-step"' in r.text
    r = c.get(f"/compare?id={a}&id={b}")
    assert r.status_code == 200 and 'data-plot="compare-loss-by-step"' in r.text
    r = c.get(f"/serving?month={PERIOD}")
    assert r.status_code == 200 and 'data-plot="serving-units-per-day"' in r.text
    assert "acme prod" in r.text and "70.0%" in r.text      # beta: 70 of its 100 units
    assert c.get("/runs/nope").status_code == 404
    assert c.get("/serving?month=11-2026").status_code == 400
    assert c.get("/compare").status_code == 400
    assert "no-store" in r.headers["cache-control"]


def test_beyond_loopback_every_page_needs_an_active_token(ledger, tmp_path):
    url, _ = ledger
    from shoestring.ledger.db import open_ledger

    tokens = AdminTokens(open_ledger(url))
    secret, info = tokens.create("ops")
    c = client(url, tmp_path, require_token=True)
    for path in ("/", "/serving", f"/runs/{ledger[1]['run_ids'][0]}"):
        r = c.get(path)
        assert r.status_code == 401 and "Sign in" in r.text and "acme" not in r.text
    assert c.get("/", headers={"Authorization": "Bearer sst_wrong"}).status_code == 401
    assert c.get("/", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    r = c.post("/login", data={"token": "nope"})
    assert r.status_code == 401 and "not an active admin token" in r.text
    r = c.post("/login", data={"token": secret}, follow_redirects=False)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    assert c.get("/serving").status_code == 200          # the cookie signs the browser in
    tokens.revoke(info["id"])
    assert c.get("/serving").status_code == 401          # revoked: out at once
    # only the hash is stored
    with open_ledger(url).connect() as conn:
        stored = conn.execute(text("select token_hash, prefix from ui_admin_tokens")).one()
    assert secret not in stored and stored[0] != secret and secret.startswith(stored[1])


def test_the_dashboard_cannot_write_the_ledger(ledger):
    url, _ = ledger
    engine = read_only_engine(url)
    with pytest.raises(OperationalError, match="readonly"), engine.begin() as conn:
        conn.execute(text("delete from runs"))


def test_cli_refuses_to_bind_beyond_loopback_without_a_token(ledger, tmp_path, monkeypatch):
    url, _ = ledger
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(build_cli(), ["--db", url, "ui", "--host", "0.0.0.0", "--port", "9"],
                      catch_exceptions=False)
    assert r.exit_code == 1 and "no admin token" in r.output and "token create" in r.output
    r = runner.invoke(build_cli(), ["--db", url, "ui", "token", "create", "--label", "ci"])
    assert r.exit_code == 0 and "sst_" in r.output
    r = runner.invoke(build_cli(), ["--db", url, "ui", "token", "list"])
    assert "ci" in r.output and "active" in r.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
