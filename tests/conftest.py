"""Shared fixtures: real nats-server instances on free ports and small real video files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from streams.bus import LocalNatsServer


def make_clip(path: Path, *, codec: str = "libx264", container: str | None = None, seconds: float = 2.0,
              size: tuple[int, int] = (320, 240), fps: int = 25, pattern: str = "testsrc2") -> Path:
    """Encode a lavfi test pattern (moving, real video) to ``path`` with PyAV."""
    width, height = size
    source = av.open(f"{pattern}=size={width}x{height}:rate={fps}", format="lavfi")
    out = av.open(str(path), "w", format=container)
    stream = out.add_stream(codec, rate=fps)
    assert isinstance(stream, av.VideoStream), f"{codec} is not a video codec"
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for index, frame in enumerate(source.decode(video=0)):
        if index >= int(seconds * fps):
            break
        frame.pts = None
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    source.close()
    return path


def packet_pts_s(packet: av.Packet) -> float:
    """Presentation time of a demuxed packet of a test clip (all of them have one), seconds."""
    assert packet.pts is not None and packet.time_base is not None
    return float(packet.pts * packet.time_base)


@pytest.fixture
def nats_server() -> Iterator[LocalNatsServer]:
    """A real nats-server with JetStream on a free loopback port, stopped afterwards."""
    with LocalNatsServer() as server:
        yield server


@pytest.fixture(scope="session")
def h264_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s 320x240 25 fps H.264 MP4 of a moving test pattern."""
    return make_clip(tmp_path_factory.mktemp("clips") / "testsrc.mp4")


def transcode(source: Path, path: Path, *, codec: str, container: str | None = None, size: tuple[int, int],
              fps: int, seconds: float) -> Path:
    """Re-encode the first ``seconds`` of a real video at another codec, size and frame rate."""
    from fractions import Fraction

    width, height = size
    with av.open(str(source)) as src, av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream), f"{codec} is not a video codec"
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        written = 0
        for frame in src.decode(video=0):
            pts, time_base = frame.pts, frame.time_base
            assert pts is not None and time_base is not None  # frames decoded from a file are timed
            t = float(pts * time_base)
            if t >= seconds:
                break
            while written / fps <= t:  # repeat or skip frames to reach the new rate
                new = frame.reformat(width=width, height=height, format="yuv420p")
                new.pts, new.time_base = written, Fraction(1, fps)
                for packet in stream.encode(new):
                    out.mux(packet)
                written += 1
        for packet in stream.encode():
            out.mux(packet)
    return path
