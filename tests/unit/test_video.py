"""Decoding and resampling to the model grid, on real encoded video of several codecs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import av
import numpy as np
import pytest

from actors.decoder import codec_params_from_header
from models.vision.video import (
    MODEL_HEIGHT,
    MODEL_WIDTH,
    CodecParams,
    ModelFrame,
    VideoDecoder,
    codec_params,
    iter_model_frames,
    packet_time_s,
)
from streams import messages as m
from streams.errors import CorruptPacketError, MediaError, OversizedFrameError, UnknownCodecError
from tests.conftest import make_clip, packet_pts_s

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
    decoder = VideoDecoder(CodecParams("h264", stream.codec_context.extradata or b"", 320, 240, 25.0))
    assert decoder.decode(b"\x00\x01garbage", pts_s=0.0, keyframe=False) == []
    assert decoder.skipped_before_keyframe == 1
    frames = []
    corrupt = 0
    for index, packet in enumerate(container.demux(stream)):
        if packet.size == 0:
            continue
        pts = packet_pts_s(packet)
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
    decoder = VideoDecoder(CodecParams("h264", stream.codec_context.extradata or b""), max_source_pixels=320 * 240)
    with pytest.raises(OversizedFrameError):
        for packet in container.demux(stream):
            if packet.size:
                decoder.decode(bytes(packet), pts_s=packet_pts_s(packet), keyframe=packet.is_keyframe)
        decoder.flush()
    container.close()


# -- the codec matrix: every codec parameter travels in the stream header -----------

#: (encoder, container format, file extension, pixel format) of each tiny test file.
MATRIX = [
    ("libx264", "mp4", "mp4", "yuv420p"),
    ("mpeg4", "avi", "avi", "yuv420p"),
    ("mpeg2video", "mpeg", "mpg", "yuv420p"),
    ("libvpx-vp9", "matroska", "mkv", "yuv420p"),
    ("libx264", "mpegts", "ts", "yuv420p"),
    ("msmpeg4", "avi", "avi", "yuv420p"),  # MS-MPEG4 v3, "DivX 3"
    ("cinepak", "avi", "avi", "rgb24"),
    ("mjpeg", "avi", "avi", "yuvj420p"),
    ("libx265", "matroska", "mkv", "yuv420p"),
    ("libsvtav1", "matroska", "mkv", "yuv420p"),
    ("libx264", "matroska", "mkv", "yuv422p"),  # 4:2:2
    ("libx264", "mp4", "mp4", "yuv420p10le"),  # 10-bit
    ("qtrle", "mov", "mov", "rgb24"),  # needs bits_per_coded_sample
    ("utvideo", "avi", "avi", "yuv422p"),  # needs the codec tag
    ("rawvideo", "avi", "avi", "yuv420p"),  # needs the codec tag or the pixel format
]
FPS = 25
N_FRAMES = 12  # 0.48 s: model ticks at 0, 0.2 and 0.4 s
SIZE = (64, 48)


def _encode(tmp_path: Path, codec: str, fmt: str, ext: str, pix_fmt: str) -> tuple[Path, list[np.ndarray]]:
    """Encode a moving test pattern with PyAV's own encoder.

    Returns:
        The file, and each source frame on the model grid: uint8 [MODEL_HEIGHT, MODEL_WIDTH, 3] RGB.
    """
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV has no {codec} encoder")
    path = tmp_path / f"{codec}-{pix_fmt}.{ext}"
    width, height = SIZE
    reference = []
    with av.open(f"testsrc2=size={width}x{height}:rate={FPS}", format="lavfi") as source, \
            av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=FPS)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for index, frame in enumerate(source.decode(video=0)):
            if index >= N_FRAMES:
                break
            reference.append(frame.reformat(width=MODEL_WIDTH, height=MODEL_HEIGHT, format="rgb24").to_ndarray())
            frame = frame.reformat(format=pix_fmt)
            frame.pts = None
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path, reference


def _demux(path: Path) -> tuple[CodecParams, list[av.Packet]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return codec_params(stream), [p for p in container.demux(stream) if p.size]


def _through_header(params: CodecParams) -> CodecParams:
    """The params as the decoder actor gets them: in a StreamHeader, encoded and decoded."""
    header = m.StreamHeader(stream="cam1", seq=0, pts_s=0.0, capture_ts=0.0, source="test", **asdict(params))
    return codec_params_from_header(m.decode(m.encode(header), m.StreamHeader))


def _decode_all(decoder: VideoDecoder, packets: list[av.Packet]) -> tuple[list[ModelFrame], int]:
    """Feed every packet, then flush; returns the model-grid frames and how many packets were rejected."""
    frames, rejected = [], 0
    for packet in packets:
        try:
            frames += decoder.decode(bytes(packet), pts_s=packet_time_s(packet), keyframe=packet.is_keyframe)
        except CorruptPacketError:
            rejected += 1
    return frames + decoder.flush(), rejected


@pytest.mark.parametrize(("codec", "fmt", "ext", "pix_fmt"), MATRIX, ids=[f"{c}-{p}-{e}" for c, _, e, p in MATRIX])
def test_codec_matrix_decodes_from_the_stream_header(
    tmp_path: Path, codec: str, fmt: str, ext: str, pix_fmt: str
) -> None:
    path, reference = _encode(tmp_path, codec, fmt, ext, pix_fmt)
    params, packets = _demux(path)
    carried = _through_header(params)
    assert carried == params
    decoder = VideoDecoder(carried)
    frames, rejected = _decode_all(decoder, packets)
    assert rejected == 0
    assert decoder.decoded == N_FRAMES
    assert len(frames) == 3  # 0.48 s at 5 Hz
    start_s = frames[0].pts_s
    for frame in frames:
        assert frame.rgb.shape == (MODEL_HEIGHT, MODEL_WIDTH, 3) and frame.rgb.dtype == np.uint8
        source = reference[round((frame.pts_s - start_s) * FPS)].astype(np.float32)
        got = frame.rgb.astype(np.float32)
        # The right picture in the right colours: mean colour and per-pixel error close to the source.
        assert np.abs(got.mean(axis=(0, 1)) - source.mean(axis=(0, 1))).max() < 6.0
        assert np.abs(got - source).mean() < 16.0


#: Files that no decoder opened from what the old code carried could decode.
#: ``old``: the old decoder (codec name and extradata only); ``old_header``: the new
#: decoder fed only what the old header carried (name, extradata, size, frame rate).
OLD_FAILURES = [
    ("msmpeg4", "avi", "avi", "yuv420p", "old"),
    ("cinepak", "avi", "avi", "rgb24", "old"),
    ("qtrle", "mov", "mov", "rgb24", "old_header"),
    ("utvideo", "avi", "avi", "yuv422p", "old_header"),
    ("rawvideo", "avi", "avi", "yuv420p", "old_header"),
]


@pytest.mark.parametrize(("codec", "fmt", "ext", "pix_fmt", "old"), OLD_FAILURES,
                         ids=[f"{c}-{o}" for c, *_, o in OLD_FAILURES])
def test_without_the_full_parameters_nothing_decodes(
    tmp_path: Path, codec: str, fmt: str, ext: str, pix_fmt: str, old: str
) -> None:
    path, _ = _encode(tmp_path, codec, fmt, ext, pix_fmt)
    params, packets = _demux(path)
    if old == "old":
        partial = CodecParams(params.codec_name, params.extradata)
    else:
        partial = CodecParams(params.codec_name, params.extradata, params.width, params.height, params.fps_hz)
    decoder = VideoDecoder(partial)
    frames, rejected = _decode_all(decoder, packets)
    assert frames == [] and decoder.decoded == 0
    assert rejected == len(packets)  # every packet, as real DivX 3 / Cinepak files did


def test_header_of_an_old_producer_still_decodes(h264_clip: Path) -> None:
    params, packets = _demux(h264_clip)
    old = m.StreamHeader(stream="cam1", seq=0, pts_s=0.0, capture_ts=0.0, codec_name=params.codec_name,
                         extradata=params.extradata, width=params.width, height=params.height, fps_hz=params.fps_hz)
    carried = codec_params_from_header(m.decode(m.encode(old), m.StreamHeader))
    assert carried == CodecParams(params.codec_name, params.extradata, params.width, params.height, params.fps_hz)
    frames, rejected = _decode_all(VideoDecoder(carried), packets)
    assert rejected == 0 and 9 <= len(frames) <= 11


@pytest.mark.parametrize("bad", [{"pix_fmt": "no_such_format"}, {"codec_tag": "abc"}, {"field_order": 1 << 40}])
def test_invalid_codec_parameters(bad: dict) -> None:
    with pytest.raises(MediaError, match="invalid codec parameters for h264"):
        VideoDecoder(CodecParams("h264", width=64, height=48, **bad))


def test_audio_codec_is_refused() -> None:
    with pytest.raises(UnknownCodecError, match="not a video codec"):
        VideoDecoder(CodecParams("aac"))
