"""Parsing /v1/completions bodies: OpenAI's defaults, every refusal names its field."""

from __future__ import annotations

import json

import pytest

from shoestring.models.sampling import SamplingParams
from shoestring.serve.openai_protocol import OpenAIError, completion, error_body, \
    parse_completion_request, sse


def parse(**body):
    return parse_completion_request(json.dumps({"model": "bard", "prompt": "hi", **body}).encode())


def test_defaults_follow_openai():
    r = parse()
    assert (r.model, r.prompt, r.max_tokens, r.stop, r.seed, r.stream) == \
        ("bard", "hi", None, (), None, False)
    assert r.sampling == SamplingParams(1.0, None, None)


def test_sampling_fields_and_their_off_values():
    r = parse(temperature=0, top_p=0.9, top_k=40, seed=-3, stop="\n", max_tokens=5,
              n=1, best_of=1, echo=False, logprobs=None, presence_penalty=0, user="u1")
    assert r.sampling == SamplingParams(0.0, 40, 0.9) and r.sampling.greedy
    assert (r.stop, r.seed, r.max_tokens) == (("\n",), -3, 5)
    assert parse(top_k=-1, top_p=1).sampling == SamplingParams(1.0, None, None)
    assert parse(top_k=0).sampling.top_k is None


def test_prompts_as_text_or_token_ids():
    assert parse(prompt=["one"]).prompt == "one"
    assert parse(prompt=[1, 2, 3]).prompt == [1, 2, 3]
    assert parse(prompt=[[4, 5]]).prompt == [4, 5]


def test_streaming_options():
    r = parse(stream=True, stream_options={"include_usage": True})
    assert r.stream and r.include_usage
    assert not parse(stream=True).include_usage


@pytest.mark.parametrize(("body", "param", "message"), [
    ({"n": 2}, "n", "'n' must be 1"),
    ({"best_of": 3}, "best_of", "'best_of' must be 1"),
    ({"n": True}, "n", "must be an integer"),
    ({"max_tokens": 0}, "max_tokens", "at least 1"),
    ({"max_tokens": -5}, "max_tokens", "at least 1"),
    ({"max_tokens": 2.5}, "max_tokens", "must be an integer"),
    ({"temperature": -0.1}, "temperature", "between 0 and 2"),
    ({"temperature": "hot"}, "temperature", "finite number"),
    ({"top_p": 0}, "top_p", r"\(0, 1\]"),
    ({"top_k": -2}, "top_k", "at least 1"),
    ({"seed": 2**63}, "seed", "64-bit"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "1 to 4"),
    ({"stop": [""]}, "stop", "non-empty"),
    ({"stop": "x" * 257}, "stop", "at most 256 characters"),
    ({"stream": "yes"}, "stream", "true or false"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed with"),
    ({"echo": True}, "echo", "not supported"),
    ({"logprobs": 1}, "logprobs", "not supported"),
    ({"frequency_penalty": 0.5}, "frequency_penalty", "not supported"),
    ({"logit_bias": {"1": 5}}, "logit_bias", "not supported"),
    ({"suffix": "end"}, "suffix", "not supported"),
    ({"prompt": ""}, "prompt", "empty"),
    ({"prompt": ["a", "b"]}, "prompt", "one prompt per request"),
    ({"prompt": [1, "a"]}, "prompt", "non-empty string or a list of token ids"),
    ({"prompt": [True]}, "prompt", "token ids"),
    ({"model": ""}, "model", "missing required field 'model'"),
    ({"temprature": 1}, "temprature", "unrecognized request argument"),
])
def test_bad_fields_are_refused_with_400_naming_them(body, param, message):
    with pytest.raises(OpenAIError, match=message) as info:
        parse(**body)
    assert info.value.status == 400 and info.value.param == param
    err = json.loads(info.value.body())["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"


def test_not_json_or_not_an_object():
    for raw in (b"{", b"[1]", b"\xff"):
        with pytest.raises(OpenAIError) as info:
            parse_completion_request(raw)
        assert info.value.status == 400
    with pytest.raises(OpenAIError, match="'prompt'"):
        parse_completion_request(b'{"model": "bard"}')


def test_response_shapes():
    body = completion("cmpl-1", 5, "bard", "hey", "length", {"prompt_tokens": 1,
                                                              "completion_tokens": 3,
                                                              "total_tokens": 4})
    assert body["choices"] == [{"text": "hey", "index": 0, "logprobs": None,
                                "finish_reason": "length"}]
    event = sse(body)
    assert event.startswith(b"data: {") and event.endswith(b"}\n\n")
    assert json.loads(error_body(429, "slow down", code="rate_limit_exceeded")) == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None,
                  "code": "rate_limit_exceeded"}}
