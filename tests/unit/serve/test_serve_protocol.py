import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoestring.serve.protocol import (
    Limits,
    OutputTensor,
    ProtocolError,
    TensorSpec,
    encode_response,
    parse_infer,
)

SPEC = TensorSpec("input", "FP32", (2, 3))
OUTS = ("probabilities", "label")
LIMITS = Limits(max_rows=4, max_elements=100, max_text_bytes=10)


def body(**tensor):
    t = {"name": "input", "shape": [1, 2, 3], "datatype": "FP32", "data": list(range(6))}
    t.update(tensor)
    return json.dumps({"inputs": [t]}).encode()


NAN_BODY = (b'{"inputs": [{"name": "input", "shape": [1,2,3], "datatype": "FP32", '
            b'"data": [NaN, 1, 2, 3, 4, 5]}]}')


def refused(raw: bytes, spec=SPEC) -> ProtocolError:
    with pytest.raises(ProtocolError) as err:
        parse_infer(raw, spec, OUTS, LIMITS)
    assert 400 <= err.value.status < 500
    return err.value


def test_flat_and_nested_data_give_the_same_array():
    flat = parse_infer(body(), SPEC, OUTS, LIMITS)
    nested = parse_infer(body(data=[[[0, 1, 2], [3, 4, 5]]]), SPEC, OUTS, LIMITS)
    assert flat.rows == nested.rows == 1
    assert flat.x.dtype == np.float32 and flat.x.shape == (1, 2, 3)
    assert np.array_equal(flat.x, nested.x)


def test_integer_datatypes_are_accepted_and_checked():
    ok = parse_infer(body(datatype="UINT8", data=[0, 255, 1, 2, 3, 4]), SPEC, OUTS, LIMITS)
    assert ok.x.max() == 255
    assert "range of UINT8" in refused(body(datatype="UINT8", data=[0, 256, 1, 2, 3, 4])).message
    assert "non-integer" in refused(body(datatype="INT32", data=[0.5] * 6)).message


@pytest.mark.parametrize("raw, words", [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"inputs": []}', "exactly one"),
    (b'{"inputs": [{"name": "input"}], "id": 5}', "'id' must be a string"),
    (body(name="x"), "input name 'x'"),
    (body(datatype="FLOAT"), "not an Open Inference Protocol datatype"),
    (body(datatype="BYTES"), "expected FP32"),
    (body(shape=[1, 6]), "does not match the model's [-1, 2, 3]"),
    (body(shape="1,2,3"), "'shape' must be"),
    (body(shape=[0, 2, 3], data=[]), "rows"),
    (body(data="abc"), "'data' must be a list"),
    (body(data=[1, 2, 3]), "needs 6"),
    (body(data=["a"] * 6), "only numbers"),
    (body(data=[True] * 6), "booleans"),
    (body(data=[False, 1, 1, 1, 1, 1]), "booleans"),  # numpy would read False as 0
    (body(data=[[0.5, 1, 2], [3, 4, True]]), "booleans"),
    (body().decode().encode("utf-16"), "not UTF-8"),
    (body().decode().encode("utf-32"), "not UTF-8"),
    (body(data=[[0, 1, 2], [3, 4]]), "regular array"),
    (NAN_BODY, "NaN or infinity"),
    (body(data=[1e300] * 6), "too large for FP32"),
    (body(data=[10**40] * 6), "too large for FP32"),  # read as 1e40 (JSON numbers)
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
])
def test_bad_requests_are_4xx_naming_the_problem(raw, words):
    assert words in refused(raw).message


def test_size_limits_are_413():
    assert refused(body(shape=[5, 2, 3], data=[0] * 30)).status == 413


def test_requested_outputs_are_checked():
    raw = json.loads(body())
    raw["outputs"] = [{"name": "label"}]
    assert parse_infer(json.dumps(raw).encode(), SPEC, OUTS, LIMITS).outputs == ("label",)
    raw["outputs"] = [{"name": "logits"}]
    assert "unknown output" in refused(json.dumps(raw).encode()).message


def test_text_inputs():
    spec = TensorSpec("text", "BYTES", ())
    raw = json.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                  "data": ["hello", "world"]}]}).encode()
    assert parse_infer(raw, spec, OUTS, LIMITS).x == ["hello", "world"]
    long = raw.replace(b'"world"', b'"' + b"w" * 11 + b'"')
    assert refused(long, spec).status == 413
    mixed = raw.replace(b'"world"', b"5")
    assert "must be a string" in refused(mixed, spec).message


def test_responses_follow_the_protocol():
    outs = [OutputTensor("probabilities", "FP32", [1, 2], [0.25, 0.75]),
            OutputTensor("label", "BYTES", [1], ["b"])]
    doc = json.loads(encode_response("m", "1", "req-7", outs, ("label",), {"units": 1}))
    assert doc == {"model_name": "m", "model_version": "1", "id": "req-7",
                   "parameters": {"units": 1},
                   "outputs": [{"name": "label", "datatype": "BYTES", "shape": [1],
                                "data": ["b"]}]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20)
tensors = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["input", "text", "x"]) | st.text(max_size=3),
    "shape": st.lists(st.integers(-2, 7), max_size=4) | json_values,
    "datatype": st.sampled_from(["FP32", "INT8", "UINT8", "BYTES", "BOOL", "FP16"]) | json_values,
    "data": st.lists(st.floats() | st.integers() | st.text(max_size=3), max_size=50)
    | json_values})


@settings(max_examples=300, deadline=None)
@given(doc=st.fixed_dictionaries({}, optional={"inputs": st.lists(tensors, max_size=2)
                                             | json_values, "id": json_values,
                                             "outputs": json_values}) | json_values)
def test_no_request_body_raises_anything_but_a_4xx(doc):
    raw = json.dumps(doc).encode()
    for spec in (SPEC, TensorSpec("text", "BYTES", ())):
        try:
            parse_infer(raw, spec, OUTS, LIMITS)
        except ProtocolError as exc:
            assert 400 <= exc.status < 500
