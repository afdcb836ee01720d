"""`streams.publisher.publish` on a real nats-server: a start offset into a file."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType

from streams import messages as m
from streams.bus import LocalNatsServer, connect
from streams.publisher import publish
from streams.subjects import stream_subject
from tests.conftest import packet_pts_s


def _clip_with_keyframes_every_second(path: Path, seconds: int = 4, fps: int = 25) -> Path:
    source = av.open(f"testsrc2=size=160x120:rate={fps}", format="lavfi")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.gop_size = fps
        for index, frame in enumerate(source.decode(video=0)):
            if index >= seconds * fps:
                break
            frame.pts, frame.time_base = index, Fraction(1, fps)
            frame.pict_type = PictureType.NONE  # lavfi marks every frame I: let the encoder choose
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    source.close()
    return path


async def test_publish_from_an_offset_starts_at_the_keyframe_before_it(
    nats_server: LocalNatsServer, tmp_path: Path
) -> None:
    clip = _clip_with_keyframes_every_second(tmp_path / "gop25.mp4")
    with av.open(str(clip)) as c:
        v = c.streams.video[0]
        source = [(packet_pts_s(p), bytes(p), p.is_keyframe) for p in c.demux(v) if p.size]
    assert [t for t, _, key in source if key] == [0.0, 1.0, 2.0, 3.0]
    nc = await connect(nats_server.url, name="test-publisher")
    got: list[m.VideoPacket] = []

    async def collect(msg) -> None:
        message = m.decode(msg.data)
        if isinstance(message, m.VideoPacket):
            got.append(message)

    await nc.subscribe(stream_subject("offset", "video"), cb=collect)
    try:
        await publish(str(clip), stream="offset", nats_url=nats_server.url, realtime=False, loop=2,
                      max_seconds=3.0, open_with_controller=False, start_s=2.5)
        await nc.flush()
        await asyncio.sleep(0.2)
    finally:
        await nc.close()
    # The first play starts at the keyframe of 2.0 s, media time at 0; the second from the top.
    assert got[0].keyframe and got[0].pts_s == 0.0 and got[0].data == source[[t for t, _, _ in source].index(2.0)][1]
    restart = next(i for i, p in enumerate(got) if i and p.keyframe and p.data == source[0][1])
    assert abs(got[restart].pts_s - 2.0) < 1e-6  # 2 s of the first play, then the loop
    assert max(p.pts_s for p in got) <= 3.0

