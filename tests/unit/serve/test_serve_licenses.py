import json
from datetime import date

import pytest

from shoestring.errors import ShoestringError
from shoestring.serve.licenses import (
    License,
    check_models,
    generate_keypair,
    issue_license,
    verify_license,
)


@pytest.fixture
def keys(tmp_path):
    priv, pub = tmp_path / "vendor.key", tmp_path / "vendor.pub"
    generate_keypair(priv, pub)
    return priv, pub


def issue(tmp_path, keys, **kw):
    lic = License(**{"customer": "Acme", "models": ("digits",), "expires": date(2027, 1, 31),
                     "features": ("onprem",), **kw})
    out = tmp_path / "license.json"
    issue_license(lic, keys[0], out)
    return out


def test_a_signed_license_verifies_offline(tmp_path, keys):
    path = issue(tmp_path, keys)
    assert oct(keys[0].stat().st_mode & 0o777) == "0o600"
    lic = verify_license(path, keys[1], date(2027, 1, 31))  # valid through its last day
    assert lic.customer == "Acme" and lic.covers("digits") and not lic.covers("other")
    check_models(lic, ["digits"], path)
    with pytest.raises(ShoestringError, match="does not cover model.*'other'"):
        check_models(lic, ["digits", "other"], path)


def test_expired_licenses_are_refused(tmp_path, keys):
    path = issue(tmp_path, keys)
    with pytest.raises(ShoestringError, match="expired on 2027-01-31"):
        verify_license(path, keys[1], date(2027, 2, 1))


@pytest.mark.parametrize("field, value", [("customer", "Mallory"), ("models", ["*"]),
                                          ("expires", "2099-12-31")])
def test_any_edit_breaks_the_signature(tmp_path, keys, field, value):
    path = issue(tmp_path, keys)
    doc = json.loads(path.read_text())
    doc["license"][field] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(ShoestringError, match="altered or was not signed"):
        verify_license(path, keys[1], date(2026, 6, 1))


def test_another_vendors_key_and_garbage_are_refused(tmp_path, keys):
    path = issue(tmp_path, keys)
    other_priv, other_pub = tmp_path / "o.key", tmp_path / "o.pub"
    generate_keypair(other_priv, other_pub)
    with pytest.raises(ShoestringError, match="not signed by this public key"):
        verify_license(path, other_pub, date(2026, 6, 1))
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    with pytest.raises(ShoestringError, match="not a Shoestring license"):
        verify_license(junk, keys[1], date(2026, 6, 1))
    with pytest.raises(ShoestringError, match="not a PEM public key"):
        verify_license(path, junk, date(2026, 6, 1))
    with pytest.raises(ShoestringError, match="cannot read license"):
        verify_license(tmp_path / "missing.json", keys[1], date(2026, 6, 1))


def test_wildcard_licenses_cover_every_model(tmp_path, keys):
    lic = verify_license(issue(tmp_path, keys, models=("*",)), keys[1], date(2026, 6, 1))
    check_models(lic, ["a", "b"], tmp_path)


def test_a_pinned_run_folder_is_served_with_the_vendors_license_only(tmp_path, keys, run_dir,
                                                                      db_url):
    from shoestring.serve.config import resolve_serve_config
    from shoestring.serve.licenses import pin_public_key
    from shoestring.serve.server import check_license

    pin_public_key(keys[1], run_dir)
    lic = issue(tmp_path, keys, models=("tiny",))

    def cfg(**kw):
        return resolve_serve_config({"models": [{"run_dir": run_dir}], "db": db_url, **kw})

    check_license(cfg(license=lic), date(2026, 6, 1))  # the pinned key verifies it
    check_license(cfg(license=lic, public_key=keys[1]), date(2026, 6, 1))  # the same key: ok
    with pytest.raises(ShoestringError, match="licensed software"):
        check_license(cfg(), date(2026, 6, 1))
    own_priv, own_pub = tmp_path / "own.key", tmp_path / "own.pub"
    generate_keypair(own_priv, own_pub)
    mine = tmp_path / "mine.json"
    issue_license(License("Me", ("*",), date(2099, 1, 1)), own_priv, mine)
    with pytest.raises(ShoestringError, match="not signed by this public key"):
        check_license(cfg(license=mine), date(2026, 6, 1))
    with pytest.raises(ShoestringError, match="cannot be replaced"):
        check_license(cfg(license=mine, public_key=own_pub), date(2026, 6, 1))
