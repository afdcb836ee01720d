"""End to end on the embedded system: real video through all five actors, and bad input."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.embedded import EmbeddedSystem
from models.data.procedural import ClipSpec, write_clip
from streams import messages as m
from streams import settings
from streams.bus import LocalNatsServer, connect
from streams.errors import CapacityError, SessionError, StreamIdError, TransportError
from streams.listener import Listener
from streams.publisher import open_session, publish
from streams.subjects import stream_subject
from tests.conftest import transcode

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def run_stream(system: EmbeddedSystem, source: Path, stream: str, **kwargs: Any) -> Listener:
    listener = Listener(stream, system.nats_url)
    await listener.start()
    try:
        await publish(str(source), stream=stream, nats_url=system.nats_url, **kwargs)
        await asyncio.wait_for(listener.ended.wait(), timeout=60)
        await asyncio.sleep(0.3)
    finally:
        await listener.stop()
    return listener


@pytest.fixture(scope="module")
def match_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(ClipSpec(kind="match", seed=4242, duration_s=12.0), tmp_path_factory.mktemp("m") / "match.mp4")


async def test_procedural_match_gives_commentary_text_and_speech(
    system: EmbeddedSystem, match_clip: Path, tmp_path: Path
) -> None:
    listener = await run_stream(system, match_clip, "match1")
    lines = listener.finished_lines()
    assert lines, "no commentary line"
    assert all(line.text.strip() for line in lines)
    pcm = np.concatenate([c.pcm for c in listener.speech]).astype(np.float32)
    assert np.sqrt(np.mean(pcm**2)) > 300  # audible speech, not silence
    report = listener.report()
    for stage in ("decoder", "flow", "tokenizer", "commentator", "tts"):
        assert stage in report["stages"], f"no final counters from {stage}"
    assert report["stages"]["decoder"]["counters"]["frames"] >= 55  # 12 s at 5 Hz
    assert report["stages"]["commentator"]["counters"]["model_steps"] >= 55
    assert report["bflow"]["tokens"] > 0
    assert not report["errors"]
    vtt = listener.write_vtt(tmp_path / "commentary.vtt").read_text().splitlines()
    assert vtt[0] == "WEBVTT" and sum("-->" in row for row in vtt) == len(lines)
    with wave.open(str(listener.write_wav(tmp_path / "commentary.wav", duration_s=12.0))) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        assert wav.getnframes() >= 12.0 * wav.getframerate()


async def test_real_clip_through_all_actors(system: EmbeddedSystem) -> None:
    sample = settings.sample_clip()
    if not sample.exists():
        pytest.fail(f"sample clip missing: {sample} (scripts/setup.sh fetches it)")
    listener = await run_stream(system, sample, "bunny", loop=2)
    report = listener.report()
    assert report["stages"]["decoder"]["counters"]["decoded"] >= 250  # 2 x 132 source frames
    assert report["stages"]["commentator"]["counters"]["model_steps"] >= 50
    assert listener.finished_lines(), "no commentary on the real clip"
    pcm = np.concatenate([c.pcm for c in listener.speech]).astype(np.float32)
    assert np.sqrt(np.mean(pcm**2)) > 300


FORMATS = [
    ("mpeg4", "avi", None, (320, 240), 25),
    ("mpeg2video", "mpg", "mpeg", (352, 288), 30),
    ("libvpx-vp9", "mkv", "matroska", (426, 240), 24),
    ("libx264", "mkv", "matroska", (854, 480), 12),
]


async def test_real_clip_in_other_codecs_containers_sizes_and_rates_at_once(
    system: EmbeddedSystem, tmp_path: Path
) -> None:
    sample = settings.sample_clip()
    clips = [transcode(sample, tmp_path / f"bbb-{codec}.{ext}", codec=codec, container=fmt, size=size, fps=fps,
                       seconds=3.0) for codec, ext, fmt, size, fps in FORMATS]
    listeners = await asyncio.gather(*(run_stream(system, clip, f"fmt{i}") for i, clip in enumerate(clips)))
    for clip, listener in zip(clips, listeners, strict=True):
        report = listener.report()
        assert not report["errors"], (clip.name, report["errors"])
        assert 13 <= report["stages"]["decoder"]["counters"]["frames"] <= 16, clip.name  # 3 s at 5 Hz
        assert report["stages"]["commentator"]["counters"]["model_steps"] >= 13, clip.name


async def test_garbage_on_one_stream_does_not_disturb_another(system: EmbeddedSystem, match_clip: Path) -> None:
    bad = Listener("garbage1", system.nats_url)
    await bad.start()
    nc = await connect(system.nats_url, name="test-garbage")
    try:
        good = asyncio.create_task(run_stream(system, match_clip, "clean1", max_seconds=6.0))
        for index in range(20):
            await nc.publish(stream_subject("garbage1", "video"), b"\x93garbage" * (index + 1))
            await nc.publish(stream_subject("clean1", "tokens"), b"not msgpack at all")
            await asyncio.sleep(0.05)
        await nc.flush()
        clean = await good
        await asyncio.sleep(0.5)
    finally:
        await nc.close()
        await bad.stop()
    errors = [s for s in bad.statuses if s.level == "error"]
    assert errors and all(s.code == "schema" and s.stage == "decoder" for s in errors)
    assert max(s.counters.get("errors.schema", 0) for s in errors) >= 10
    assert clean.report()["stages"]["decoder"]["counters"]["frames"] >= 25
    commentator_errors = [s for s in clean.statuses if s.stage == "commentator" and s.code == "schema"]
    assert commentator_errors, "garbage on clean1.tokens was not reported"


async def _send_header(system: EmbeddedSystem, stream: str, **header: Any) -> list[m.Status]:
    listener = Listener(stream, system.nats_url)
    await listener.start()
    nc = await connect(system.nats_url, name="test-header")
    try:
        subject = stream_subject(stream, "video")
        fields = {"codec_name": "h264", "width": 320, "height": 240, **header}
        await nc.publish(subject, m.encode(m.StreamHeader(stream=stream, seq=0, pts_s=0, capture_ts=m.now(), **fields)))
        await nc.publish(subject, m.encode(m.VideoPacket(stream=stream, seq=1, pts_s=0, capture_ts=m.now(),
                                                         data=b"\x00" * 100, keyframe=True)))
        await nc.publish(subject, m.encode(m.EndOfStream(stream=stream, seq=2, pts_s=0, capture_ts=m.now())))
        await nc.flush()
        await asyncio.wait_for(listener.ended.wait(), timeout=30)
        await asyncio.sleep(0.3)
    finally:
        await nc.close()
        await listener.stop()
    return [s for s in listener.statuses if s.level == "error"]


async def test_unknown_codec_is_reported(system: EmbeddedSystem) -> None:
    errors = await _send_header(system, "codec1", codec_name="nosuchcodec")
    assert errors[0].code == "unknown_codec" and "nosuchcodec" in errors[0].message


async def test_oversized_frame_is_reported(system: EmbeddedSystem) -> None:
    errors = await _send_header(system, "huge1", width=30000, height=20000)
    assert errors[0].code == "oversized"


async def test_truncated_stream_ends_cleanly(system: EmbeddedSystem, match_clip: Path, tmp_path: Path) -> None:
    import av

    ts = tmp_path / "match.ts"
    with av.open(str(match_clip)) as src, av.open(str(ts), "w", format="mpegts") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.size:
                packet.stream = out
                dst.mux(packet)
    cut = tmp_path / "cut.ts"
    cut.write_bytes(ts.read_bytes()[: ts.stat().st_size // 3])
    listener = await run_stream(system, cut, "cut1")
    decoded = listener.report()["stages"]["decoder"]["counters"]["frames"]
    assert 5 <= decoded <= 30


async def test_capacity_error_keeps_running_sessions(system: EmbeddedSystem) -> None:
    nc = await connect(system.nats_url, name="test-capacity")
    try:
        opened = []
        with pytest.raises(SessionError, match="capacity") as info:
            for index in range(10):
                await open_session(nc, f"cap{index}", prefix="mmd")
                opened.append(f"cap{index}")
        assert 1 <= len(opened) <= 6
        assert isinstance(info.value, CapacityError)  # the typed refusal, not a bare SessionError
    finally:
        for stream in opened:
            await nc.request("mmd.sessions.close", m.encode(m.CloseSession(stream=stream)), timeout=5)
        await nc.close()


def test_cli_rejects_bad_stream_id(h264_clip: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mmduplex.cli", "publish", str(h264_clip), "--stream", "a.b*",
                           "--nats", "nats://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "invalid stream id" in done.stderr


def test_cli_reports_unreachable_nats(h264_clip: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mmduplex.cli", "publish", str(h264_clip), "--stream", "ok",
                           "--nats", "nats://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "transport" in done.stderr and "cannot reach NATS" in done.stderr


async def test_publisher_fails_cleanly_when_nats_goes_away(match_clip: Path) -> None:
    server = LocalNatsServer().start()
    task = asyncio.create_task(publish(str(match_clip), stream="gone1", nats_url=server.url,
                                       open_with_controller=False))
    await asyncio.sleep(1.5)
    server.stop()
    with pytest.raises(TransportError):
        await asyncio.wait_for(task, timeout=60)


def test_invalid_stream_id_never_reaches_nats() -> None:
    with pytest.raises(StreamIdError):
        asyncio.run(publish("x.mp4", stream="bad.id", nats_url="nats://127.0.0.1:1"))
