"""The serving commands through the real command tree (click's runner, in process)."""

import json
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from shoestring.cli.main import build_cli


@pytest.fixture
def cli(db_url):
    runner = CliRunner()
    group = build_cli()

    def run(*args, ok=True):
        result = runner.invoke(group, ["--db", db_url, *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def test_keys_create_list_revoke(cli):
    created = json.loads(cli("keys", "create", "--project", "acme", "--plan", "pro",
                             "--json").stdout)
    assert created["key"].startswith("ss_") and created["plan"] == "pro"
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert [k["id"] for k in listed] == [created["id"]]
    assert created["key"] not in cli("keys", "list").stdout  # the secret is never shown again
    cli("keys", "revoke", created["id"])
    assert json.loads(cli("keys", "list", "--json").stdout)[0]["active"] is False
    bad = cli("keys", "create", "--project", "acme", "--plan", "gold", ok=False)
    assert bad.exit_code == 1 and "unknown plan 'gold'" in bad.output


def test_usage_invoice_and_export_of_an_empty_month(cli, tmp_path):
    cli("keys", "create", "--project", "acme")
    usage = json.loads(cli("usage", "--project", "acme", "--month", "2026-05", "--json").stdout)
    assert {k: usage[k] for k in ("requests", "units", "cost_usd")} == \
        {"requests": 0, "units": 0, "cost_usd": 0.0}
    inv = json.loads(cli("invoice", "--project", "acme", "--month", "2026-05",
                         "--json").stdout)
    assert inv["lines"] == [] and inv["total_usd"] == 0.0
    out = tmp_path / "events.jsonl"
    assert "Wrote 0 CloudEvents" in cli("usage-export", "--out", str(out)).output
    # Issue 16 item 8: a missing folder is created, '-' is standard output, and a
    # folder given as the file is a clear error.
    nested = tmp_path / "missing" / "dir" / "x.jsonl"
    assert "Wrote 0 CloudEvents" in cli("usage-export", "--out", str(nested)).output
    assert nested.read_text() == ""
    piped = cli("usage-export", "--out", "-")
    assert piped.stdout == "" and "to standard output" in piped.stderr  # no events this month
    assert not (tmp_path / "-").exists()
    bad = cli("usage-export", "--out", str(tmp_path), ok=False)
    assert bad.exit_code == 1 and "is a folder" in bad.output and "unexpected" not in bad.output
    assert "not YYYY-MM" in cli("usage", "--project", "acme", "--month", "05/2026",
                                ok=False).output
    cli("projects", "budget", "--project", "acme", "--monthly-usd", "20")
    assert json.loads(cli("usage", "--project", "acme", "--json").stdout)["budget_usd"] == 20


def test_license_keygen_issue_verify(cli, tmp_path):
    priv, pub, lic = tmp_path / "v.key", tmp_path / "v.pub", tmp_path / "lic.json"
    cli("license", "keygen", "--private", str(priv), "--public", str(pub))
    again = cli("license", "keygen", "--private", str(priv), "--public", str(pub), ok=False)
    assert "refusing to overwrite" in again.output
    cli("license", "issue", "--customer", "Acme", "--models", "digits,text",
        "--expires", "2099-01-01", "--features", "onprem", "--signing-key", str(priv),
        "--out", str(lic))
    assert "Valid license for Acme" in cli("license", "verify", str(lic), "--public-key",
                                           str(pub)).output
    lic.write_text(lic.read_text().replace("Acme", "Evil"))
    bad = cli("license", "verify", str(lic), "--public-key", str(pub), ok=False)
    assert bad.exit_code == 1 and "altered" in bad.output


def test_serve_refuses_bad_setups_before_listening(cli, tmp_path, run_dir):
    r = cli("serve", str(tmp_path / "missing"), "--port", "0", ok=False)
    assert r.exit_code == 1 and "is not a run folder" in r.output
    r = cli("serve", str(run_dir), "--license", str(tmp_path / "l.json"), ok=False)
    assert "--license needs the vendor's public key" in r.output
    r = cli("serve", str(run_dir), "--public-key", str(tmp_path / "v.pub"), ok=False)
    assert "--public-key is only used with --license" in r.output
    r = cli("serve", str(run_dir), "--name", "a", "--name", "b", ok=False)
    assert "2 --name given for 1 RUN_DIR" in r.output
    r = cli("serve", str(run_dir), "--max-batch-size", "0", "--port", "99999", ok=False)
    assert "max_batch_size" in r.output and "port" in r.output  # every problem at once


def test_serve_enforces_licenses(cli, tmp_path, run_dir):
    priv, pub, lic = tmp_path / "v.key", tmp_path / "v.pub", tmp_path / "lic.json"
    cli("license", "keygen", "--private", str(priv), "--public", str(pub))
    cli("license", "issue", "--customer", "Acme", "--models", "other", "--expires",
        "2099-01-01", "--signing-key", str(priv), "--out", str(lic))
    r = cli("serve", str(run_dir), "--license", str(lic), "--public-key", str(pub), ok=False)
    assert r.exit_code == 1 and "does not cover model(s) 'tiny'" in r.output
    cli("license", "issue", "--customer", "Acme", "--models", "tiny", "--expires",
        "2000-01-01", "--signing-key", str(priv), "--out", str(lic))
    r = cli("serve", str(run_dir), "--license", str(lic), "--public-key", str(pub), ok=False)
    assert "expired on 2000-01-01" in r.output


def test_a_pinned_vendor_key_refuses_self_signed_licenses(cli, tmp_path, run_dir):
    """Issue 9: a customer's own key pair cannot license a run folder the vendor pinned."""
    vendor = tmp_path / "vendor.key", tmp_path / "vendor.pub"
    own = tmp_path / "own.key", tmp_path / "own.pub"
    for priv, pub in (vendor, own):
        cli("license", "keygen", "--private", str(priv), "--public", str(pub))
    assert "Pinned the vendor key" in cli("license", "pin", str(run_dir), "--public-key",
                                          str(vendor[1])).output
    assert (run_dir / "vendor.pub").read_bytes() == vendor[1].read_bytes()
    r = cli("serve", str(run_dir), "--port", "0", ok=False)  # no license at all
    assert r.exit_code == 1 and "licensed software" in r.output
    mine = tmp_path / "own.license"
    cli("license", "issue", "--customer", "Me", "--models", "*", "--expires", "2099-01-01",
        "--signing-key", str(own[0]), "--out", str(mine))
    r = cli("serve", str(run_dir), "--license", str(mine), "--public-key", str(own[1]),
            ok=False)  # the customer's own public key cannot replace the pinned one
    assert r.exit_code == 1 and "cannot be replaced" in r.output
    r = cli("serve", str(run_dir), "--license", str(mine), ok=False)  # checked by the pin
    assert r.exit_code == 1 and "not signed by this public key" in r.output
    r = cli("license", "pin", str(tmp_path), "--public-key", str(vendor[1]), ok=False)
    assert "not a run folder" in r.output


def test_usage_replay_records_a_stopped_servers_log(cli, tmp_path, db_url):
    import orjson

    from shoestring.ledger.db import open_ledger
    from shoestring.serve.metering import UsageEvent
    from shoestring.serve.usage import usage_summary
    from shoestring.serve.usage_log import UsageLog

    log = UsageLog(tmp_path / "log")
    log.append(orjson.dumps([UsageEvent(
        id=f"e{i}", key_id="k", project="acme", plan="pro", model="m", version="1", units=2,
        cost_nano_usd=1000, latency_ms=1.0, created_at=datetime(2026, 5, 2, tzinfo=timezone.utc)
    ).record() for i in range(3)]))
    r = cli("usage-replay", "--usage-log", str(tmp_path / "log"), ok=False)
    assert r.exit_code == 1 and "in use by another server" in r.output  # still running
    log.close()  # the server stopped (or was killed)
    assert "Recorded 3 usage events" in cli("usage-replay", "--usage-log",
                                            str(tmp_path / "log")).output
    assert "Recorded 0 usage events" in cli("usage-replay", "--usage-log",
                                            str(tmp_path / "log")).output
    assert usage_summary(open_ledger(db_url), "acme", "2026-05")["units"] == 6
