"""OpenAI's completions API, as far as Shoestring serves it: request parsing, response shapes.

Pure functions over bytes and dicts. The field names, defaults and shapes follow
OpenAI's API reference for ``POST /v1/completions`` (the "legacy" completions
endpoint) and ``GET /v1/models``, so that the official ``openai`` clients work
unchanged: ``max_tokens`` defaults to 16, ``temperature`` and ``top_p`` to 1,
at most 4 stop sequences; a streamed answer is server-sent events of
``text_completion`` chunks ending with ``data: [DONE]``. ``top_k`` is an
extension (vLLM's spelling; -1, 0 or null mean "all tokens").

Fields that would change the answer in ways this server does not implement
(``n`` > 1, ``best_of`` > 1, ``echo``, ``logprobs``, penalties, ``logit_bias``,
``suffix``) are refused with a 400 naming the field rather than ignored, and so
is any field OpenAI does not define. Errors use OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from shoestring.models.generate import MAX_STOP_SEQUENCES
from shoestring.models.sampling import SamplingParams

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
MAX_SEED = 2**63 - 1
# Every generated token is checked against the stop sequences' prefixes: bound the work.
MAX_STOP_CHARS = 256
KNOWN_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "stop", "seed",
                "n", "best_of", "stream", "stream_options", "echo", "logprobs",
                "presence_penalty", "frequency_penalty", "logit_bias", "suffix", "user"}
# Accepted only at the value that means "off".
UNSUPPORTED = {"echo": (False,), "logprobs": (None,), "presence_penalty": (0, 0.0),
               "frequency_penalty": (0, 0.0), "logit_bias": ({},), "suffix": (None, "")}

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 503: "server_error"}


class OpenAIError(Exception):
    """A refused request: HTTP ``status``, a message for people, OpenAI's ``param``/``code``."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: str | None = None,
               code: str | None = None) -> bytes:
    """OpenAI's error object (the ``openai`` clients read ``error.message``)."""
    return orjson.dumps({"error": {"message": message,
                                   "type": _TYPES.get(status, "server_error"),
                                   "param": param, "code": code}})


@dataclass(frozen=True)
class CompletionRequest:
    """A valid completions request. ``prompt`` is text, or token ids given directly."""

    model: str
    prompt: str | list[int]
    max_tokens: int | None  # None: not given (DEFAULT_MAX_TOKENS, or what the context allows)
    sampling: SamplingParams
    stop: tuple[str, ...]
    seed: int | None
    stream: bool
    include_usage: bool


def _bad(message: str, param: str) -> OpenAIError:
    return OpenAIError(400, message, param=param, code="invalid_value")


def _int(body: dict, name: str, default: int | None) -> int | None:
    v = body.get(name, default)
    if v is None:
        return None
    # bool is an int in Python; in JSON it is not a number.
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(f"'{name}' must be an integer, got {v!r}", name)
    return v


def _number(body: dict, name: str, default: float | None) -> float | None:
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _bad(f"'{name}' must be a finite number, got {v!r}", name)
    return float(v)


def _prompt(body: dict) -> str | list[int]:
    if "prompt" not in body:
        raise OpenAIError(400, "missing required field 'prompt'", param="prompt",
                          code="missing_required_parameter")
    p = body["prompt"]
    # OpenAI takes a string, a list of strings, token ids, or a list of token-id lists; one
    # completion per prompt. This server answers one prompt per request (n = 1).
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]
    if isinstance(p, str):
        if not p:
            raise _bad("'prompt' is empty; send at least one character", "prompt")
        return p
    if isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool)
                                         for t in p):
        return p
    if isinstance(p, list) and len(p) > 1 and all(isinstance(t, (str, list)) for t in p):
        raise _bad(f"'prompt' holds {len(p)} prompts; this server completes one prompt per "
                   "request: send them as separate requests (they are batched together)",
                   "prompt")
    raise _bad("'prompt' must be a non-empty string or a list of token ids", "prompt")


def _stop(body: dict) -> tuple[str, ...]:
    s = body.get("stop")
    if s is None:
        return ()
    stops = [s] if isinstance(s, str) else s
    if not isinstance(stops, list) or not all(isinstance(x, str) and x for x in stops) \
            or len(stops) > MAX_STOP_SEQUENCES:
        raise _bad(f"'stop' must be a non-empty string or a list of 1 to {MAX_STOP_SEQUENCES} "
                   "non-empty strings", "stop")
    if any(len(x) > MAX_STOP_CHARS for x in stops):
        raise _bad(f"each stop sequence must be at most {MAX_STOP_CHARS} characters", "stop")
    return tuple(stops)


def parse_completion_request(raw: bytes) -> CompletionRequest:
    """Validate a ``POST /v1/completions`` body; raise :class:`OpenAIError` (400) if wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise OpenAIError(400, f"the body is not valid JSON: {exc}", code="invalid_json") \
            from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "the body must be a JSON object", code="invalid_json")
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        raise OpenAIError(400, f"unrecognized request argument(s): {', '.join(unknown)}",
                          param=unknown[0], code="unknown_parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(400, "missing required field 'model' (a model id from GET /v1/models)",
                          param="model", code="missing_required_parameter")
    for name in ("n", "best_of"):
        v = _int(body, name, 1)
        if v is not None and v != 1:
            raise OpenAIError(400, f"'{name}' must be 1: this server returns one completion per "
                              f"request (send {v} requests with different seeds instead)",
                              param=name, code="unsupported_value")
    for name, off in UNSUPPORTED.items():
        if name in body and body[name] is not None and body[name] not in off:
            raise OpenAIError(400, f"'{name}' is not supported by this server; leave it out",
                              param=name, code="unsupported_parameter")
    max_tokens = _int(body, "max_tokens", None)
    if max_tokens is not None and max_tokens < 1:
        raise _bad(f"'max_tokens' must be at least 1, got {max_tokens}", "max_tokens")
    temperature = _number(body, "temperature", 1.0)
    if not 0.0 <= temperature <= 2.0:
        raise _bad(f"'temperature' must be between 0 and 2, got {temperature:g}", "temperature")
    top_p = _number(body, "top_p", 1.0)
    if not 0.0 < top_p <= 1.0:
        raise _bad(f"'top_p' must be in (0, 1], got {top_p:g}", "top_p")
    top_k = _int(body, "top_k", None)
    if top_k is not None and top_k < -1:
        raise _bad(f"'top_k' must be -1 or 0 (all tokens) or at least 1, got {top_k}", "top_k")
    seed = _int(body, "seed", None)
    if seed is not None and not -MAX_SEED - 1 <= seed <= MAX_SEED:
        raise _bad("'seed' must fit in a signed 64-bit integer", "seed")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad(f"'stream' must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise _bad("'stream_options' is only allowed with 'stream': true", "stream_options")
        if not isinstance(options, dict) or set(options) - {"include_usage"} or \
                not isinstance(options.get("include_usage", False), bool):
            raise _bad("'stream_options' must be {\"include_usage\": true|false}",
                       "stream_options")
        include_usage = options.get("include_usage", False)
    return CompletionRequest(
        model=model, prompt=_prompt(body), max_tokens=max_tokens,
        sampling=SamplingParams(temperature, top_k if top_k and top_k > 0 else None,
                                top_p if top_p < 1.0 else None),
        stop=_stop(body), seed=seed, stream=stream, include_usage=include_usage)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(id_: str, created: int, model: str, text: str, finish_reason: str | None,
               usage_: dict[str, int] | None) -> dict[str, Any]:
    """A ``text_completion`` object: the whole answer, or one streamed chunk of it."""
    out: dict[str, Any] = {
        "id": id_, "object": "text_completion", "created": created, "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None,
                     "finish_reason": finish_reason}]}
    if usage_ is not None:
        out["usage"] = usage_
    return out


def usage_chunk(id_: str, created: int, model: str, usage_: dict[str, int]) -> dict[str, Any]:
    """The last chunk of a stream with ``stream_options.include_usage``: no choices."""
    return {"id": id_, "object": "text_completion", "created": created, "model": model,
            "choices": [], "usage": usage_}


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event (WHATWG HTML, "Server-sent events": ``data:`` + blank line)."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "shoestring"}
