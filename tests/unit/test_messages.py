"""Wire protocol: message round trips, rejections, subjects and stream ids."""

from __future__ import annotations

from typing import TypedDict

import msgspec
import numpy as np
import pytest

from streams import messages as m
from streams.errors import SchemaError, StreamIdError
from streams.subjects import (
    all_stream_subjects,
    parse_stream_subject,
    session_subject,
    stream_subject,
    validate_stream_id,
    wildcard_subject,
)


class Common(TypedDict):
    """The fields every per-stream message has."""

    stream: str
    seq: int
    pts_s: float
    capture_ts: float


COMMON: Common = {"stream": "cam-1", "seq": 7, "pts_s": 1.25, "capture_ts": 1_700_000_000.5}


def samples() -> list[msgspec.Struct]:
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    flow = np.linspace(-3, 3, 4 * 5 * 2, dtype=np.float16).reshape(4, 5, 2)
    return [
        m.StreamHeader(**COMMON, codec_name="h264", extradata=b"\x01\x02", width=320, height=240, fps_hz=25.0),
        m.VideoPacket(**COMMON, data=b"\x00\x00\x01\x65", keyframe=True, dts_s=1.2, duration_s=0.04),
        m.EndOfStream(**COMMON),
        m.Frame(**COMMON, image=m.Array.from_numpy(rgb)),
        m.Motion(**COMMON, image=m.Array.from_numpy(rgb), flow=m.Array.from_numpy(flow)),
        m.Tokens(**COMMON, step=3, tokens=m.Array.from_numpy(np.ones((2, 64), np.float32)), is_key=True),
        m.Tokens(**COMMON, step=4, tokens=m.Array.from_numpy(np.zeros((0, 64), np.float32))),
        m.TextDelta(**COMMON, utterance=2, text=" goal", final=False),
        m.AudioChunk(**COMMON, utterance=2, pcm=m.Array.from_numpy(np.arange(10, dtype=np.int16)),
                     sample_rate_hz=22050, text="goal for red"),
        m.Status(**COMMON, stage="decoder", level="error", code="schema", message="bad", counters={"received": 3},
                 latency_ms={"p50": 1.0}),
        m.OpenSession(stream="cam-1"),
        m.SessionReply(ok=False, stream="cam-1", error_code="capacity", error="full"),
    ]


@pytest.mark.parametrize("message", samples(), ids=lambda msg: msg.__struct_config__.tag)
def test_round_trip(message: msgspec.Struct) -> None:
    decoded = m.decode(m.encode(message))
    assert decoded == message
    assert type(decoded) is type(message)


def test_arrays_keep_dtype_shape_and_values() -> None:
    flow = np.random.default_rng(0).normal(size=(120, 160, 2)).astype(np.float16)
    motion = m.decode(m.encode(m.Motion(**COMMON, image=m.Array.from_numpy(np.zeros((120, 160, 3), np.uint8)),
                                        flow=m.Array.from_numpy(flow))), m.Motion)
    out = motion.flow.to_numpy(dtype="float16", ndim=3)
    assert out.dtype == np.float16 and out.shape == (120, 160, 2)
    np.testing.assert_array_equal(out, flow)


def test_registry_names_every_kind_once() -> None:
    assert set(m.MESSAGE_TYPES) == {
        "stream_header", "video_packet", "end_of_stream", "frame", "motion", "tokens", "text", "audio", "status",
        "open_session", "close_session", "session_reply"}


@pytest.mark.parametrize("data", [b"", b"garbage bytes", b"\xc1", msgspec.msgpack.encode([1, 2, 3]),
                                  msgspec.msgpack.encode({"kind": "nope", "stream": "a"}),
                                  msgspec.msgpack.encode({"kind": "frame", "stream": "a", "seq": "x"})])
def test_malformed_bytes_raise_schema_error(data: bytes) -> None:
    with pytest.raises(SchemaError):
        m.decode(data)


def test_wrong_schema_version_is_rejected() -> None:
    data = m.encode(m.EndOfStream(**COMMON, v=99))
    with pytest.raises(SchemaError, match="schema version 99"):
        m.decode(data)


def test_unexpected_kind_is_rejected() -> None:
    data = m.encode(m.EndOfStream(**COMMON))
    with pytest.raises(SchemaError, match="unexpected message kind 'end_of_stream'"):
        m.decode(data, m.Frame)


def test_invalid_stream_id_inside_message_is_rejected() -> None:
    bad_id: Common = {**COMMON, "stream": "a.b"}
    data = m.encode(m.EndOfStream(**bad_id))
    with pytest.raises(SchemaError, match="invalid stream id"):
        m.decode(data)


def test_array_validation() -> None:
    good = m.Array.from_numpy(np.zeros((2, 3), np.uint8))
    with pytest.raises(SchemaError, match="expected dtype float32"):
        good.to_numpy(dtype="float32")
    with pytest.raises(SchemaError, match="3-d"):
        good.to_numpy(ndim=3)
    with pytest.raises(SchemaError, match="needs 6 bytes, got 5"):
        m.Array("uint8", (2, 3), b"\x00" * 5).to_numpy()
    with pytest.raises(SchemaError):
        m.Array("object", (1,), b"\x00").to_numpy()
    with pytest.raises(SchemaError, match="cannot travel"):
        m.Array.from_numpy(np.zeros(2, np.float64))


@pytest.mark.parametrize("bad", ["", "a.b", "a*", "a>", "has space", "x" * 65, "ü", "a/b"])
def test_invalid_stream_ids(bad: str) -> None:
    with pytest.raises(StreamIdError):
        validate_stream_id(bad)
    with pytest.raises(StreamIdError):
        stream_subject(bad, "video")


def test_subjects() -> None:
    assert stream_subject("cam_1-A", "video") == "mmd.live.cam_1-A.video"
    assert stream_subject("s", "status", prefix="t1") == "t1.live.s.status"
    assert wildcard_subject("frames") == "mmd.live.*.frames"
    assert all_stream_subjects("s") == "mmd.live.s.>"
    assert session_subject("open") == "mmd.sessions.open"
    assert parse_stream_subject("mmd.live.cam1.text") == ("cam1", "text")
    with pytest.raises(StreamIdError):
        parse_stream_subject("mmd.live.cam1.bogus")
    with pytest.raises(ValueError):
        stream_subject("s", "bogus")  # type: ignore[arg-type]
