"""OpenAI-compatible completions from a real `shoestring serve` process, with the official
`openai` client: streaming, usage, continuous batching, exact metering, errors."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch
from cards import card_for
from sqlalchemy import func, select

from shoestring.ledger.db import open_ledger
from shoestring.models.card import TokenizerCard
from shoestring.models.gpt import GPT, GPTConfig
from shoestring.models.registry import build_model
from shoestring.models.run_folder import save_run
from shoestring.models.tokenizers import train_tokenizer
from shoestring.serve.keys import KeyStore
from shoestring.serve.plans import load_plans
from shoestring.serve.process import ServerProcess
from shoestring.serve.tables import UsageEventRow as E

PLANS = """
[bulk]
requests_per_second = 100000
burst = 100000
price_per_1000_units_usd = 0.5

[tight]
requests_per_second = 100000
burst = 100000
monthly_quota_units = 40
price_per_1000_units_usd = 0.5

[pair]
requests_per_second = 100000
burst = 100000
monthly_quota_units = 60
price_per_1000_units_usd = 0.5
"""
TEXT = "to be or not to be, that is the question\nROMEO: what light through yonder window\n"
CONTEXT = 128


def lm_run(out: Path) -> Path:
    """A small GPT with random weights and a char tokenizer: a real language-model run."""
    tok = train_tokenizer("char", [TEXT])
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=CONTEXT,
                          vocab_size=tok.vocab_size))
    arch = {"family": "gpt", "name": "gpt", "params": model.config.to_dict()}
    save_run(out, model, card_for(arch, task="language_modeling",
                                  tokenizer=TokenizerCard(kind="char")), tokenizer=tok)
    return out


def mlp_run(out: Path) -> Path:
    arch = {"family": "mlp", "name": "mlp", "params": {
        "in_features": 4, "hidden": [8], "out_features": 2, "dropout": 0.0, "activation": "relu"}}
    save_run(out, build_model(arch), card_for(arch, class_names=["a", "b"]))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("completions")
    plans = root / "plans.toml"
    plans.write_text(PLANS)
    db = f"sqlite:///{root / 'ledger.db'}"
    store = KeyStore(open_ledger(db), load_plans(plans))
    keys = {name: store.create(project=name, plan=plan)[0]
            for name, plan in [("main", "bulk"), ("tight", "tight"), ("pair", "pair")]}
    srv = ServerProcess(["--db", db, "serve", str(lm_run(root / "bard")),
                         str(mlp_run(root / "iris")), "--port", "0", "--plans", str(plans),
                         "--key-cache-seconds", "0", "--max-running-generations", "8"])
    with srv:
        yield {"url": srv.url, "db": db, "keys": keys, "srv": srv}


def client(server, key: str = "main") -> openai.OpenAI:
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=server["keys"][key],
                         max_retries=0, timeout=60)


def ledger(db: str, *ids: str, timeout_s: float = 20.0) -> dict[str, int]:
    """Usage event id -> units, once the events ``ids`` are there (usage reaches the SQL
    ledger ~0.25 s after its answer: the server's usage log is copied in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with open_ledger(db).connect() as conn:
            units = dict(conn.execute(select(E.id, E.units)).all())
        if all(i in units for i in ids) or time.monotonic() > deadline:
            return units
        time.sleep(0.05)


def spent(db: str, project: str, expected: int, timeout_s: float = 20.0) -> int:
    """Units the ledger holds for ``project``, waiting (a while) for ``expected``."""
    deadline = time.monotonic() + timeout_s
    while True:
        with open_ledger(db).connect() as conn:
            n = conn.execute(select(func.sum(E.units)).where(E.project == project)).scalar()
        if n == expected or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def event_id(completion_id: str) -> str:
    return completion_id.removeprefix("cmpl-")


def stream(c: openai.OpenAI, **kw) -> tuple[str, list, object]:
    chunks = list(c.completions.create(model="bard", stream=True,
                                       stream_options={"include_usage": True}, **kw))
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    return text, chunks, chunks[-1].usage


def test_the_openai_client_streams_a_completion_and_gets_exact_usage(server):
    c = client(server)
    assert [m.id for m in c.models.list()] == ["bard"]  # language models only
    prompt = "ROMEO: "
    text, chunks, usage = stream(c, prompt=prompt, max_tokens=12, temperature=0.9, seed=7)
    assert chunks[-2].choices[0].finish_reason == "length" and chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 12, 19)
    assert len(text) == 12  # one character per token
    whole = c.completions.create(model="bard", prompt=prompt, max_tokens=12, temperature=0.9,
                                 seed=7)
    assert whole.object == "text_completion" and whole.choices[0].text == text  # same seed
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.total_tokens == 19
    units = ledger(server["db"], event_id(chunks[0].id), event_id(whole.id))
    assert units[event_id(chunks[0].id)] == units[event_id(whole.id)] == 19


def test_stop_sequences_top_k_and_greedy_over_http(server):
    c = client(server)
    greedy = c.completions.create(model="bard", prompt="to be", max_tokens=30, temperature=0)
    again = c.completions.create(model="bard", prompt="to be", max_tokens=30, temperature=0,
                                 top_p=0.5, extra_body={"top_k": 3})
    assert greedy.choices[0].text == again.choices[0].text  # greedy ignores top-k/top-p
    stop = greedy.choices[0].text[5:7]
    cut = c.completions.create(model="bard", prompt="to be", max_tokens=30, temperature=0,
                               stop=[stop, "never appears"])
    expected = greedy.choices[0].text[:greedy.choices[0].text.find(stop)]
    assert cut.choices[0].text == expected and cut.choices[0].finish_reason == "stop"
    assert cut.usage.completion_tokens == len(expected) + len(stop)
    assert ledger(server["db"], event_id(cut.id))[event_id(cut.id)] == cut.usage.total_tokens


def test_concurrent_streams_are_batched_give_their_sequential_text_and_are_metered(server):
    c = client(server)
    prompts = [("to be", 20 + i, i) for i in range(8)]
    sequential = [stream(c, prompt=p, max_tokens=n, temperature=0.8, seed=s)
                  for p, n, s in prompts]
    before = metric(server, "shoestring_decode_batch_rows_sum")
    results: list = [None] * len(prompts)

    def one(i: int) -> None:
        p, n, s = prompts[i]
        results[i] = stream(client(server), prompt=p, max_tokens=n, temperature=0.8, seed=s)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    units = ledger(server["db"], *(event_id(chunks[0].id) for _, chunks, _ in results))
    for (text, chunks, usage), (seq_text, _, seq_usage) in zip(results, sequential):
        assert text == seq_text and usage.total_tokens == seq_usage.total_tokens
        assert units[event_id(chunks[0].id)] == usage.total_tokens
    rows = metric(server, "shoestring_decode_batch_rows_sum") - before
    steps = sum(n for _, n, _ in prompts)  # tokens in the concurrent run: rows of all steps
    assert rows >= steps - len(prompts)  # every token but the prefill's is a decode row...
    assert metric(server, "shoestring_decode_batch_rows_bucket", 'le="1.0"') < \
        metric(server, "shoestring_decode_batch_rows_count")  # ...and rows shared steps


def metric(server, name: str, label: str = "") -> float:
    text = httpx.get(server["url"] + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and label in line)


def test_bad_requests_get_clear_openai_errors_and_cost_nothing(server):
    c = client(server)
    before = ledger(server["db"])
    cases = [
        (openai.BadRequestError, {"n": 2}, "'n' must be 1"),
        (openai.BadRequestError, {"max_tokens": -1}, "'max_tokens' must be at least 1"),
        (openai.BadRequestError, {"max_tokens": CONTEXT}, "beyond the model's context of 128"),
        (openai.BadRequestError, {"prompt": "o" * (CONTEXT + 1)}, "beyond the model's context"),
        (openai.BadRequestError, {"prompt": "Zzz"}, "not in the char tokenizer"),
        (openai.BadRequestError, {"temperature": 3}, "'temperature' must be between 0 and 2"),
        (openai.BadRequestError, {"logprobs": 2}, "'logprobs' is not supported"),
        (openai.NotFoundError, {"model": "nope"}, "the model 'nope' does not exist"),
        (openai.BadRequestError, {"model": "iris"}, "not a language model"),
    ]
    for error, change, message in cases:
        kw = {"model": "bard", "prompt": "to be", "max_tokens": 5, **change}
        with pytest.raises(error, match=message) as info:
            c.completions.create(**kw)
        assert info.value.body["type"] == "invalid_request_error", change
    with pytest.raises(openai.BadRequestError, match="context_length_exceeded|beyond"):
        c.completions.create(model="bard", prompt="to be", max_tokens=CONTEXT)
    bad_key = openai.OpenAI(base_url=server["url"] + "/v1", api_key="ss_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="unknown API key"):
        bad_key.completions.create(model="bard", prompt="to be")
    raw = httpx.post(server["url"] + "/v1/completions", content=b"{not json",
                     headers={"Authorization": f"Bearer {server['keys']['main']}"})
    assert raw.status_code == 400 and "not valid JSON" in raw.json()["error"]["message"]
    assert httpx.get(server["url"] + "/v1/completions").status_code == 405
    time.sleep(1.0)  # anything charged would reach the ledger within ~0.25 s
    assert ledger(server["db"]) == before


def test_a_client_that_leaves_mid_stream_is_charged_once_for_what_was_produced(server):
    prompt, max_tokens = "to be", CONTEXT - 5
    body = json.dumps({"model": "bard", "prompt": prompt, "max_tokens": max_tokens,
                       "stream": True, "temperature": 1.0}).encode()
    host, port = server["srv"].host_port
    before = len(ledger(server["db"]))
    with socket.create_connection((host, port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nAuthorization: Bearer " +
                     server["keys"]["main"].encode() + b"\r\nContent-Length: " +
                     str(len(body)).encode() + b"\r\n\r\n" + body)
        got = b""
        while b"data: {" not in got or b"\n\n" not in got.split(b"data: {", 1)[1]:
            got += sock.recv(65536)
        first = json.loads(got.split(b"data: ", 1)[1].split(b"\n\n", 1)[0])
    # The socket is closed: the server cuts the generation at its next step and charges it.
    units = ledger(server["db"], event_id(first["id"]), timeout_s=30)
    assert event_id(first["id"]) in units, "the cut stream was never charged"
    charged = units[event_id(first["id"])]
    assert len(prompt) + 1 <= charged < len(prompt) + max_tokens  # cut, and charged
    time.sleep(0.5)
    assert len(ledger(server["db"])) == before + 1  # once


def test_the_quota_holds_prompt_plus_max_tokens_before_generating(server):
    c = client(server, "tight")  # 40 units a month
    with pytest.raises(openai.RateLimitError, match=r"quota of 40 units.*up to 55 units "
                       r"\(prompt 5 \+ max_tokens 50\)") as info:
        c.completions.create(model="bard", prompt="to be", max_tokens=50)
    assert info.value.body["code"] == "insufficient_quota"
    ok = c.completions.create(model="bard", prompt="to be", max_tokens=20)
    assert ok.usage.total_tokens == 25
    with pytest.raises(openai.RateLimitError, match="up to 25 units"):
        c.completions.create(model="bard", prompt="to be", max_tokens=20)
    last = c.completions.create(model="bard", prompt="to be", max_tokens=10)
    assert spent(server["db"], "tight", 40) == \
        ok.usage.total_tokens + last.usage.total_tokens == 40


def test_concurrent_streams_cannot_overdraw_a_quota_they_could_each_fit(server):
    results: dict[int, object] = {}

    def one(i: int) -> None:
        try:
            results[i] = stream(client(server, "pair"), prompt="to be", max_tokens=40, seed=i)
        except openai.RateLimitError as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # 45 units each, 60 left: the second is refused before generating, not after streaming.
    refused = [r for r in results.values() if isinstance(r, openai.RateLimitError)]
    served = [r for r in results.values() if not isinstance(r, openai.RateLimitError)]
    assert len(refused) == len(served) == 1
    assert "quota" in str(refused[0]) and "up to 45 units" in str(refused[0])
    assert spent(server["db"], "pair", 45) == served[0][2].total_tokens == 45


def test_an_idempotent_retry_gets_the_same_completion_charged_once(server):
    c = client(server)
    headers = {"Idempotency-Key": "order-7"}
    first = c.completions.create(model="bard", prompt="to", max_tokens=9, extra_headers=headers)
    raw = c.completions.with_raw_response.create(model="bard", prompt="to", max_tokens=9,
                                                 extra_headers=headers)
    assert raw.headers["idempotent-replayed"] == "true"
    again = raw.parse()
    assert (again.id, again.choices[0].text) == (first.id, first.choices[0].text)
    # The same JSON serialized differently is the same request.
    respaced = httpx.post(server["url"] + "/v1/completions", headers={
        **headers, "Authorization": f"Bearer {server['keys']['main']}"},
        content=b'{ "max_tokens" : 9,\n  "prompt": "to", "model": "bard" }')
    assert respaced.json()["id"] == first.id
    streamed, chunks, usage = stream(c, prompt="to", max_tokens=9, extra_headers={
        "Idempotency-Key": "order-8"})
    replayed, again_chunks, again_usage = stream(c, prompt="to", max_tokens=9, extra_headers={
        "Idempotency-Key": "order-8"})
    assert (replayed, again_usage.total_tokens) == (streamed, usage.total_tokens)
    assert again_chunks[0].id == chunks[0].id
    with pytest.raises(openai.UnprocessableEntityError, match="different request"):
        c.completions.create(model="bard", prompt="to", max_tokens=8, extra_headers=headers)
    ledger(server["db"], event_id(first.id), event_id(chunks[0].id))
    with open_ledger(server["db"]).connect() as conn:
        n = conn.execute(select(func.count()).where(E.idempotency_key.in_(
            ["order-7", "order-8"]))).scalar()
    assert n == 2
