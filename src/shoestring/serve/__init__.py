"""Serving and monetization: ``shoestring serve`` and its ledger (see docs/serve.md).

Modules, from the request inwards:

* ``http`` — the HTTP/1.1 connection: TCP_NODELAY, timeouts, connection limit, JSON
  errors, and the infer routes answered without ASGI;
* ``app`` — the Open Inference Protocol v2 routes (FastAPI) and the ASGI fast path;
* ``service`` — one request's life: key, plan, limits, idempotency, admission, batch;
* ``billing`` — the metering interface every metered route uses (authenticate, reserve,
  charge, release);
* ``batching`` — dynamic and adaptive (``t(n) = a·n + b``) batching, load shedding;
* ``answers`` — responses of a batch, charged together;
* ``allowances`` — leased quota/budget units and rate tokens, spent locally;
* ``ledger_writer`` / ``usage_log`` — group commit: usage made durable in the replica's
  log (or, with an Idempotency-Key, the SQL ledger) before the answer;
* ``reconciler`` / ``ledger_sql`` — the log copied into the shared SQL ledger; leases,
  counters, rate buckets; ``metering`` — their vocabulary (events, periods, outcomes);
* ``model_store`` — run folders loaded once, preprocessing, text inputs;
* ``keys``, ``auth``, ``plans``, ``ratelimit`` — API keys, plans (TOML), token buckets;
* ``usage`` — reports, invoices, CloudEvents export; ``licenses`` — Ed25519 licenses;
* ``server`` — uvicorn, SIGTERM drain; ``metrics`` — Prometheus;
* ``demo`` — the quickstart's serving step; ``loadgen``, ``process`` — load generator
  and child-process harness for benchmarks and tests.

Nothing is imported here, so ``import shoestring.serve`` stays cheap.
"""
