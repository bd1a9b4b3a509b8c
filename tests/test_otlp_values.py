"""The protobuf door reads common AnyValues by hand (ingestion.otlp.decode.any_value): each
must read exactly as the protobuf message does, and odd encodings fall back to it."""

import math

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from ingestion.otlp.decode import _pb_attributes, _pb_value, any_value


def _value(value) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, dict):
        return AnyValue(kvlist_value={"values": [KeyValue(key=k, value=_value(v))
                                                 for k, v in value.items()]})
    return AnyValue(array_value=ArrayValue(values=[_value(item) for item in value]))


VALUES = ["", "a", "x" * 127, "x" * 128, "é" * 300, "y" * 70_000, 0, 1, 127, 128, -1,
          2**63 - 1, -(2**63), True, False, 0.0, -2.5, 1e300, b"\x00\xff", [], ["a", "b"],
          [1, "two", 3.0, True, [4, ["deep"]]], ["z" * 200] * 3, {"k": "v", "n": [1, 2]},
          ["a", {"k": 1}], [b"raw"]]


@pytest.mark.parametrize("value", VALUES, ids=lambda value: repr(value)[:30])
def test_hand_read_values_match_protobuf(value):
    data = _value(value).SerializeToString()
    expected = _pb_value(AnyValue.FromString(data))
    assert any_value(data) == expected
    assert type(any_value(data)) is type(expected)
    assert _pb_attributes({"key": data}) == {"key": expected}


def test_empty_and_unusual_encodings_fall_back_to_protobuf():
    assert any_value(b"") is None
    # The same field twice: protobuf keeps the last; the hand reader must not take the first.
    twice = AnyValue(int_value=1).SerializeToString() + AnyValue(int_value=2).SerializeToString()
    assert any_value(twice) == 2
    # A non-canonical array holding an unknown field after its values.
    array = AnyValue(array_value=ArrayValue(values=[_value("a")])).SerializeToString()
    odd = bytes([0x2A, array[1] + 2]) + array[2:] + b"\x10\x01"
    assert any_value(odd) == _pb_value(AnyValue.FromString(odd))
    nan = any_value(AnyValue(double_value=math.nan).SerializeToString())
    assert math.isnan(nan)
