"""How the demo tells, from the decoder's status reports, that nothing of a stream decoded."""

from __future__ import annotations

from actors.demo import decode_failure
from streams import messages as m


def _status(stage: str, level: m.StatusLevel = "info", code: str = "counters", message: str = "", /,
            **counters: int) -> m.Status:
    return m.Status(stream="demo", seq=0, pts_s=0.0, capture_ts=0.0, stage=stage, level=level,
                    code=code, message=message, counters=counters)


def test_the_decoders_first_error_is_the_reason() -> None:
    statuses = [
        _status("decoder", "error", "corrupt_packet", "cinepak packet could not be decoded: Invalid argument",
                received=2),
        _status("flow", "warning", "dropped", "flow: 1 dropped"),
        _status("decoder", "error", "session", "video packet before the stream header: dropped", received=3),
        _status("decoder", "info", "counters", "decoder: stream ended", received=3, **{"errors.corrupt_packet": 2}),
    ]
    assert decode_failure(statuses, frames_received=0) == (
        "corrupt_packet: cinepak packet could not be decoded: Invalid argument")


def test_a_stream_that_decoded_is_no_failure() -> None:
    errors = [_status("decoder", "error", "corrupt_packet", "one bad packet", received=5, decoded=4)]
    assert decode_failure(errors, frames_received=0) == ""  # the counters say frames came out
    assert decode_failure(errors[:0], frames_received=3) == ""  # frames were seen on the stream


def test_no_error_and_no_frame_names_the_counters() -> None:
    statuses = [_status("decoder", received=25, skipped_before_keyframe=25)]
    assert decode_failure(statuses, frames_received=0) == (
        "the decoder reported no error but decoded no frame (received 25, skipped_before_keyframe 25)")
    assert decode_failure([], frames_received=0) == "the decoder reported nothing about the stream"
