"""`mmduplex demo` on a file of which nothing decodes exits 1 with the decoder's own reason,
not 0 with "0 lines": a real CLI process on the embedded system (NATS, Ray, the app)."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

FPS = 25


def _truncated_raw_avi(path: Path, *, packets: int = FPS) -> Path:
    """A valid AVI of raw 64x48 yuv420p video whose packets are 1,000 bytes instead of 4,608.

    FFmpeg's raw video decoder rejects every such packet (EINVAL), as it rejects a
    stream whose header announces a larger frame than its packets hold.
    """
    with av.open(str(path), "w") as out:
        stream = out.add_stream("rawvideo", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(packets):
            packet = av.Packet(bytes([128]) * 1000)
            packet.stream, packet.time_base = stream, Fraction(1, FPS)
            packet.pts = packet.dts = index
            packet.is_keyframe = True
            out.mux(packet)
    return path


def test_demo_of_an_undecodable_file_exits_1_with_the_decoders_reason(tmp_path: Path) -> None:
    clip = _truncated_raw_avi(tmp_path / "truncated.avi")
    out = tmp_path / "out"
    cli = Path(sys.executable).with_name("mmduplex")
    done = subprocess.run([str(cli), "demo", str(clip), "--out", str(out)],
                          capture_output=True, text=True, timeout=220)
    assert done.returncode == 1, done.stderr[-3000:]
    reason = done.stderr.strip().splitlines()[-1]
    assert f"nothing of {clip} decoded: corrupt_packet: rawvideo packet could not be decoded" in reason, reason
    assert "lines; B-Flow" not in done.stdout  # no success summary
    assert "did not finish" not in done.stdout  # the decoder's end of stream ended the wait
    report = json.loads((out / "report.json").read_text())
    assert report["decode_failure"].startswith("corrupt_packet: rawvideo packet could not be decoded")
    assert report["published"]["packets"] == FPS
    decoder = report["stages"]["decoder"]["counters"]  # its final counters: the end of stream got through
    assert decoder["errors.corrupt_packet"] == FPS and decoder.get("decoded", 0) == 0
