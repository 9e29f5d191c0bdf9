"""Encryption at rest end to end: an encrypted training run served over HTTP, evaluated,
reported, audited and compressed with the key; an encrypted prepared folder trained from;
and every command refusing the folder without the key, with the wrong key, or tampered."""

from __future__ import annotations

import http.client
import json
import os

import pytest
from click.testing import CliRunner

from shoestring.cli.main import build_cli
from shoestring.crypto.folder import MARKER, unencrypted_files
from shoestring.crypto.keys import ENV_KEY, ENV_KEY_FILE, write_new_key
from shoestring.serve.process import ServerProcess

BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                               "data": [float(i % 17) for i in range(64)]}]})


@pytest.fixture(autouse=True)
def _no_key_from_outside(monkeypatch):
    # --key-file sets $SHOESTRING_ENCRYPTION_KEY_FILE for the process: undo it after each test.
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)


def invoke(*args: str, ok: bool = True):
    try:
        r = CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)
    finally:  # each call is its own process as far as the key is concerned
        os.environ.pop(ENV_KEY_FILE, None)
    assert (r.exit_code == 0) == ok, r.output
    return r


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory):
    """A key, an encrypted prepared digits folder and an encrypted run trained from it."""
    from shoestring.data.prepare.config import resolve_prepare_config
    from shoestring.data.prepare.pipeline import prepare
    from shoestring.train.api import train
    from shoestring.train.config import resolve_config

    root = tmp_path_factory.mktemp("encrypted")
    key = root / "key"
    write_new_key(key)
    prep, run = root / "prep", root / "digits"
    with pytest.MonkeyPatch.context() as mp:  # the key reaches shoestring.io by the environment
        mp.setenv(ENV_KEY_FILE, str(key))
        prepare(resolve_prepare_config({"source": "digits", "out": str(prep), "encrypt": True,
                                        "label_issues": False}))
        train(resolve_config({"data": {"source": f"prepared:{prep}"}, "train": {"epochs": 1},
                              "out": str(run), "encrypt": True}), ledger=None)
    return key, prep, run


def test_every_file_of_an_encrypted_run_and_prepared_folder_is_encrypted(encrypted):
    _key, prep, run = encrypted
    for folder in (prep, run):
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert len(files) > 5 and unencrypted_files(folder) == []
        assert (folder / MARKER).exists()
    for name in ("model.safetensors", "summary.json", "config.toml", "metrics.jsonl",
                 "checkpoints/manifest.json"):
        assert (run / name).exists(), name
    assert b"test_accuracy" not in (run / "summary.json").read_bytes()


def test_an_encrypted_run_is_served_over_http_with_the_key(encrypted, tmp_path):
    key, _prep, run = encrypted
    args = ["--db", f"sqlite:///{tmp_path / 'ledger.db'}", "serve", str(run), "--port", "0",
            "--no-auth"]
    with ServerProcess(args, env={ENV_KEY_FILE: str(key)}) as srv:
        conn = http.client.HTTPConnection(*srv.host_port, timeout=30)
        conn.request("POST", "/v2/models/digits/infer", BODY,
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 200
        probs = body["outputs"][0]["data"]
        assert len(probs) == 10 and abs(sum(probs) - 1) < 1e-4


def test_serving_without_the_key_fails_at_start_with_the_fix(encrypted, tmp_path):
    _key, _prep, run = encrypted
    r = invoke("--db", f"sqlite:///{tmp_path / 'l.db'}", "serve", str(run), "--port", "0",
               "--no-auth", ok=False)
    assert "needs the encryption key" in r.output and "--key-file" in r.output


def test_eval_report_and_audit_read_the_encrypted_run_with_the_key(encrypted, tmp_path):
    key, _prep, run = encrypted
    r = invoke("eval", str(run), "--key-file", str(key), "--json")
    metrics = json.loads(r.output)
    assert 0.3 < metrics["test_accuracy"] <= 1.0
    invoke("report", str(run), "--key-file", str(key), "--out", str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text()
    assert "accuracy (fraction correct) by step" in page and "could not be read" not in page
    audit_out = tmp_path / "audit"
    invoke("audit", str(run), "--key-file", str(key), "--out", str(audit_out), "--explain", "4")
    assert (audit_out / MARKER).exists() and unencrypted_files(audit_out) == []
    # The card's weights digest names the model (the decrypted weights), not the ciphertext.
    import hashlib

    from shoestring.io import read_bytes, read_text
    env = {ENV_KEY_FILE: str(key)}
    card = json.loads(read_text(audit_out / "model_card.json", environ=env))
    plain = hashlib.sha256(read_bytes(run / "model.safetensors", environ=env)).hexdigest()
    at_rest = hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    assert card["model"]["weights_sha256"] == plain != at_rest


def test_wrong_key_and_no_key_are_refused_by_every_reader(encrypted, tmp_path):
    _key, prep, run = encrypted
    wrong = tmp_path / "wrong"
    write_new_key(wrong)
    for args in (["eval", str(run)], ["report", str(run), "--out", str(tmp_path / "x.html")],
                 ["train", "--data", f"prepared:{prep}", "--epochs", "1", "--out",
                  str(tmp_path / "r2")]):
        r = invoke(*args, ok=False)
        assert "needs the encryption key" in r.output, r.output
        r = invoke(*args, "--key-file", str(wrong), ok=False)
        assert "wrong key" in r.output and "needs key id" in r.output, r.output


def test_a_tampered_weight_file_is_refused(encrypted, tmp_path):
    import shutil

    key, _prep, run = encrypted
    copy = tmp_path / "digits"
    shutil.copytree(run, copy)
    weights = copy / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    weights.write_bytes(bytes(raw))
    r = invoke("eval", str(copy), "--key-file", str(key), ok=False)
    assert "model.safetensors" in r.output and "authentication" in r.output
    weights.write_bytes(bytes(raw[:len(raw) // 2]))
    r = invoke("eval", str(copy), "--key-file", str(key), ok=False)
    assert "model.safetensors" in r.output


def test_training_a_plaintext_run_on_encrypted_data_warns(encrypted, tmp_path):
    key, prep, _run = encrypted
    r = invoke("train", "--data", f"prepared:{prep}", "--epochs", "1", "--out",
               str(tmp_path / "plain"), "--key-file", str(key))
    assert "is encrypted but the run folder will not be" in r.output
    assert not (tmp_path / "plain" / MARKER).exists()


def test_compress_of_an_encrypted_run_stays_encrypted(encrypted, tmp_path):
    key, _prep, run = encrypted
    out = tmp_path / "small"
    invoke("compress", str(run), "--out", str(out), "--key-file", str(key), "--methods",
           "dynamic-int8", "--measure-seconds", "0.1", "--batch-sizes", "1")
    assert (out / MARKER).exists() and unencrypted_files(out) == []
    r = invoke("eval", str(out), "--key-file", str(key), "--json")
    assert json.loads(r.output)["test_accuracy"] > 0.3


def test_keygen_and_status(tmp_path, encrypted):
    _key, _prep, run = encrypted
    r = invoke("encryption", "keygen", "--out", str(tmp_path / "k"))
    assert "key id" in r.output
    text = (tmp_path / "k").read_text().strip()
    assert text not in r.output
    invoke("encryption", "keygen", "--out", str(tmp_path / "k"), ok=False)
    r = invoke("encryption", "status", str(run), "--json")
    info = json.loads(r.output)
    assert info["encrypted"] and info["plaintext_files"] == [] and not info["key_fits"]


def test_encrypting_into_a_plaintext_folder_is_refused(tmp_path):
    key = tmp_path / "key"
    write_new_key(key)
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = invoke("train", "--data", "digits", "--epochs", "1", "--out", str(out), "--encrypt",
               "--key-file", str(key), ok=False)
    assert "already holds plaintext files" in r.output
    r = invoke("train", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "r2"),
               "--encrypt", ok=False)
    assert "--encrypt" in r.output and "needs the encryption key" in r.output


def test_an_encrypted_run_resumes_from_its_encrypted_checkpoint(encrypted, tmp_path):
    import shutil

    key, _prep, run = encrypted
    copy = tmp_path / "digits"
    shutil.copytree(run, copy)
    before = json.loads(invoke("eval", str(copy), "--key-file", str(key), "--json").output)
    r = invoke("train", "--out", str(copy), "--resume", "--epochs", "2", "--key-file", str(key))
    assert "resum" in r.output.lower(), r.output
    assert unencrypted_files(copy) == []
    from shoestring.io import read_text

    os.environ[ENV_KEY_FILE] = str(key)
    try:
        summary = json.loads(read_text(copy / "summary.json"))
        steps = [json.loads(line)["step"] for line in
                 read_text(copy / "metrics.jsonl").splitlines()]
    finally:
        os.environ.pop(ENV_KEY_FILE)
    # The second epoch continued from the first's encrypted checkpoint and metrics.
    assert summary["status"] == "finished" and summary["epochs_run"] == 2.0, summary
    assert len(steps) == 2 and steps[1] == 2 * steps[0] == summary["steps"], steps
    assert before["test_accuracy"] > 0


def test_a_tampered_or_substituted_shard_is_refused(encrypted, tmp_path):
    import shutil

    key, prep, _run = encrypted
    copy = tmp_path / "prep"
    shutil.copytree(prep, copy)
    shard = next((copy / "shards").glob("train-*.safetensors"))
    args = ("train", "--data", f"prepared:{copy}", "--epochs", "1", "--out",
            str(tmp_path / "r"), "--key-file", str(key))
    raw = bytearray(shard.read_bytes())
    raw[-1] ^= 1
    shard.write_bytes(bytes(raw))
    r = invoke(*args, ok=False)
    assert shard.name in r.output and "authentication" in r.output
    shard.write_bytes(b"plaintext forgery")
    r = invoke(*args, ok=False)
    assert "is not encrypted, but its folder" in r.output


def test_an_encrypted_text_corpus_is_not_streamed_undecrypted(tmp_path):
    key = tmp_path / "key"
    write_new_key(key)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i} of a small corpus about nothing\n" for i in range(300)))
    prep = tmp_path / "prep"
    invoke("data", "prepare", f"text:{corpus}", "--out", str(prep), "--encrypt",
           "--key-file", str(key))
    r = invoke("train", "--model", "gpt-nano", "--data", f"text:{prep}/shards/train",
               "--max-steps", "1", "--out", str(tmp_path / "lm"), "--key-file", str(key),
               ok=False)
    assert "lies in an encrypted folder" in r.output
