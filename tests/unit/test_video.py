"""Decoding and resampling to the model grid, on real encoded video of several codecs."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.vision.video import MODEL_HEIGHT, MODEL_WIDTH, CodecParams, VideoDecoder, iter_model_frames
from streams.errors import CorruptPacketError, MediaError, OversizedFrameError, UnknownCodecError
from tests.conftest import make_clip

CASES = [
    ("libx264", "mp4", None),
    ("mpeg4", "avi", None),
    ("mpeg2video", "mpg", "mpeg"),
    ("libvpx-vp9", "mkv", "matroska"),
    ("libx264", "ts", "mpegts"),
]


@pytest.mark.parametrize(("codec", "ext", "fmt"), CASES, ids=[f"{c}-{e}" for c, e, _ in CASES])
def test_codecs_and_containers_decode_to_model_grid(tmp_path: Path, codec: str, ext: str, fmt: str | None) -> None:
    clip = make_clip(tmp_path / f"clip.{ext}", codec=codec, container=fmt, seconds=2.0, size=(352, 288), fps=25)
    frames = list(iter_model_frames(clip))
    assert 9 <= len(frames) <= 11  # 2 s at 5 Hz
    assert all(f.rgb.shape == (MODEL_HEIGHT, MODEL_WIDTH, 3) and f.rgb.dtype.name == "uint8" for f in frames)
    times = [f.pts_s for f in frames]
    assert times == sorted(times)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) > 0.15 and max(gaps) < 0.25
    assert frames[3].rgb.std() > 10  # a real picture, not a blank frame


def test_frame_rate_below_model_rate_is_kept(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "slow.mp4", fps=2, seconds=3.0)
    assert len(list(iter_model_frames(clip))) == 6


def test_truncated_file_yields_what_it_can(tmp_path: Path, h264_clip: Path) -> None:
    data = h264_clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError):
        list(iter_model_frames(cut))  # the moov atom is at the end of an MP4: nothing to read


def test_truncated_mpegts_decodes_the_first_part(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.ts", container="mpegts", seconds=2.0)
    cut = tmp_path / "cut.ts"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    frames = list(iter_model_frames(cut))
    assert 2 <= len(frames) <= 8


def test_not_a_video(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(MediaError):
        list(iter_model_frames(junk))


def test_unknown_codec() -> None:
    with pytest.raises(UnknownCodecError, match="no decoder for codec 'nosuchcodec'"):
        VideoDecoder(CodecParams("nosuchcodec"))


def test_oversized_header() -> None:
    with pytest.raises(OversizedFrameError):
        VideoDecoder(CodecParams("h264", width=20000, height=20000))


def test_decoder_waits_for_keyframe_and_survives_garbage(h264_clip: Path) -> None:
    import av

    container = av.open(str(h264_clip))
    stream = container.streams.video[0]
    decoder = VideoDecoder(CodecParams("h264", bytes(stream.codec_context.extradata), 320, 240, 25.0))
    assert decoder.decode(b"\x00\x01garbage", pts_s=0.0, keyframe=False) == []
    assert decoder.skipped_before_keyframe == 1
    frames = []
    corrupt = 0
    for index, packet in enumerate(container.demux(stream)):
        if packet.size == 0:
            continue
        pts = float(packet.pts * packet.time_base)
        if index == 10:
            try:
                decoder.decode(b"\xff" * 64, pts_s=pts, keyframe=False)
            except CorruptPacketError:
                corrupt += 1
        frames += decoder.decode(bytes(packet), pts_s=pts, keyframe=packet.is_keyframe)
    frames += decoder.flush()
    container.close()
    assert 9 <= len(frames) <= 11  # garbage did not stop decoding


def test_oversized_decoded_frame(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "big.mp4", size=(640, 480), seconds=0.5)
    import av

    container = av.open(str(clip))
    stream = container.streams.video[0]
    # The header lies about the size; the decoded frames reveal it.
    decoder = VideoDecoder(CodecParams("h264", bytes(stream.codec_context.extradata)), max_source_pixels=320 * 240)
    with pytest.raises(OversizedFrameError):
        for packet in container.demux(stream):
            if packet.size:
                decoder.decode(bytes(packet), pts_s=float(packet.pts * packet.time_base), keyframe=packet.is_keyframe)
        decoder.flush()
    container.close()
