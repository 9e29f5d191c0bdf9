"""The typed configuration of ``shoestring serve`` (one validation, every problem at once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from shoestring.config import StrictConfig, validate_config
from shoestring.errors import ConfigError


class ServedModelConfig(StrictConfig):
    run_dir: Path = Field(..., description="a run folder written by 'shoestring train'")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$",
                             description="model name (default: the folder's name)")
    version: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                                description="model version (default: 1)")


class ServeConfig(StrictConfig):
    """Everything ``shoestring serve`` needs; each field documents its default."""

    models: list[ServedModelConfig] = Field(..., min_length=1, description="models to serve")
    host: str = Field("127.0.0.1", description="interface to bind (loopback unless told)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0 picks a free one")
    db: str = Field(..., description="usage ledger URL (SQLite file or PostgreSQL)")
    auth: bool = Field(True, description="require API keys and meter usage; False serves "
                       "openly with no keys and no metering")
    plans: Path | None = Field(None, description="plans TOML replacing the default plans")
    max_batch_size: int = Field(32, ge=1, le=4096, description="rows per batch at most")
    max_delay_ms: float = Field(0.0, ge=0, le=1000,
                                description="extra time a request may wait for its batch to "
                                "fill; 0 runs it at once when the model is idle (requests "
                                "arriving while a batch runs form the next batch)")
    inline_batch_ms: float = Field(1.0, ge=0, le=1000, description="a batch predicted to "
                                   "take at most this long runs on the event loop itself, "
                                   "saving two thread hand-offs; 0 always uses the inference "
                                   "thread")
    adaptive: bool = Field(False, description="keep latency under latency_target_ms by "
                           "capping batches and shedding load with 503")
    latency_target_ms: float = Field(50.0, gt=0, description="adaptive mode's latency target")
    max_queue_rows: int = Field(4096, ge=1, description="rows queued per model before 503")
    max_rows_per_request: int = Field(256, ge=1, description="rows one request may carry")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest request body")
    max_text_bytes: int = Field(65536, ge=1, description="largest text of a BYTES input")
    header_timeout_s: float = Field(5.0, gt=0, description="a request's headers must arrive "
                                    "within this time of its first byte (else 408, closed)")
    body_timeout_s: float = Field(10.0, gt=0, description="a request's body must arrive "
                                  "within this time of its headers (else 408, closed)")
    keep_alive_s: int = Field(5, ge=1, description="an idle keep-alive connection is closed "
                              "after this many seconds")
    max_connections: int = Field(1024, ge=1, description="open connections at most; more "
                                 "are answered 503 and closed")
    threads: int = Field(1, ge=1, description="torch CPU threads for inference")
    max_new_tokens: int = Field(32, ge=1, le=4096, description="tokens a language model "
                                "writes per prompt (greedy)")
    max_running_generations: int = Field(16, ge=1, le=1024, description="sequences a "
                                         "language model decodes together in /v1/completions "
                                         "(its KV-cache slots, allocated at start)")
    max_generation_tokens: int | None = Field(None, ge=1, description="prompt + max_tokens "
                                              "summed over running generations (default: "
                                              "max-running-generations x the context)")
    max_waiting_generations: int = Field(256, ge=0, description="completions queued for a "
                                         "running slot before 503")
    durable: bool = Field(True, description="fsync the usage log (and a SQLite ledger) at each "
                          "group commit, so charged requests survive a power cut (False: they "
                          "survive a crash of the server only)")
    usage_log: Path | None = Field(None, description="this replica's usage log directory, "
                                   "where charges become durable (default: beside a SQLite "
                                   "ledger, else ./.shoestring/usage-log); one per replica, on "
                                   "storage that outlives the process")
    lease_seconds: float = Field(30.0, ge=2, le=3600, description="how long this replica's "
                                 "hold on a slice of a quota or budget lasts unrenewed; a "
                                 "replica that vanishes frees its slices after this")
    key_cache_seconds: float = Field(2.0, ge=0, description="how long a key lookup is cached "
                                     "(a revoked key stops working within this time)")
    license: Path | None = Field(None, description="license file to enforce (on-premises)")
    public_key: Path | None = Field(None, description="vendor's Ed25519 public key (PEM); "
                                    "not needed, and not accepted if different, when the key "
                                    "is pinned in the run folder ('shoestring license pin')")
    drain_seconds: float = Field(25.0, ge=0, description="after SIGTERM, longest wait for "
                                 "in-flight requests before exiting")
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="event loop: uvloop when installed (auto), or asyncio's own")
    access_log: bool = Field(False, description="log every request (uvicorn access log)")

    @model_validator(mode="after")
    def _license_pair(self) -> ServeConfig:
        if self.public_key is not None and self.license is None:
            raise ValueError("--public-key is only used with --license")
        return self

    def summary(self) -> dict[str, Any]:
        """The resolved config for logs, with the database password hidden."""
        from shoestring.ledger.db import safe_url as _safe

        d = self.model_dump(mode="json")
        d["db"] = _safe(self.db)
        return d


def resolve_serve_config(values: dict[str, Any]) -> ServeConfig:
    """Validate ``values`` into a :class:`ServeConfig`, reporting every problem together."""
    cfg = validate_config(ServeConfig, values, hint="see 'shoestring serve --help'")
    from shoestring.models.run_folder import CARD, RunFolder

    missing = [str(m.run_dir) for m in cfg.models if not RunFolder(m.run_dir).has_model()]
    if missing:
        raise ConfigError([f"'{p}' is not a run folder (no {CARD})" for p in missing],
                          hint="pass the --out folder of a finished 'shoestring train'")
    return cfg
