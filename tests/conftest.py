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


@pytest.fixture
def nats_server() -> Iterator[LocalNatsServer]:
    """A real nats-server with JetStream on a free loopback port, stopped afterwards."""
    with LocalNatsServer() as server:
        yield server


@pytest.fixture(scope="session")
def h264_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s 320x240 25 fps H.264 MP4 of a moving test pattern."""
    return make_clip(tmp_path_factory.mktemp("clips") / "testsrc.mp4")
