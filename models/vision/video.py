"""Video decoding with PyAV and resampling to the model grid.

The live decoder actor and the training pipeline both turn compressed packets into
model-grid frames with :class:`VideoDecoder`, so the model trains on exactly what it
will see live. The model grid is a fixed frame rate and size
(:data:`MODEL_FPS_HZ`, :data:`MODEL_WIDTH` x :data:`MODEL_HEIGHT`); sources of any size
and rate are scaled (aspect ratio is not kept: the grid is 4:3 whatever the source) and
subsampled to it by presentation time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext
from av.video.reformatter import VideoReformatter

from streams.errors import CorruptPacketError, MediaError, OversizedFrameError, UnknownCodecError

log = logging.getLogger(__name__)

MODEL_FPS_HZ = 5.0
MODEL_WIDTH = 160
MODEL_HEIGHT = 120

#: Largest source frame accepted, in pixels (8K UHD); larger frames are refused.
MAX_SOURCE_PIXELS = 7680 * 4320

_PTS_TIME_BASE = Fraction(1, 1_000_000)  # packets are timed in microseconds


@dataclass(frozen=True)
class ModelGrid:
    """The model's sampling grid.

    Attributes:
        fps_hz: Model steps per second (one sampled frame per step).
        width: Frame width in pixels.
        height: Frame height in pixels.
    """

    fps_hz: float = MODEL_FPS_HZ
    width: int = MODEL_WIDTH
    height: int = MODEL_HEIGHT


@dataclass(frozen=True)
class ModelFrame:
    """One frame on the model grid.

    Attributes:
        pts_s: Presentation time of the source frame, seconds on the stream's clock.
        rgb: uint8 [height, width, 3] RGB.
    """

    pts_s: float
    rgb: np.ndarray


#: FFmpeg's "unknown" codec level (``AV_LEVEL_UNKNOWN``), the level of a fresh decoder.
LEVEL_UNKNOWN = -99


@dataclass(frozen=True)
class CodecParams:
    """What a decoder needs to open a stream: the demuxer's ``AVCodecParameters``.

    Carried in ``streams.messages.StreamHeader``. The defaults are those of a freshly
    created FFmpeg decoder, so a field left at its default changes nothing. Some codecs
    cannot decode without more than the codec name: MS-MPEG4 and Cinepak need the
    frame size, QuickTime RLE the bits per coded sample, Ut Video and raw video the
    codec tag or the pixel format.

    Attributes:
        codec_name: FFmpeg decoder name (``h264``, ``mpeg4``, ``vp9``, ...).
        extradata: Codec extradata bytes, possibly empty.
        width: Frame width in pixels as the demuxer reported it (0 if unknown).
        height: Frame height in pixels as the demuxer reported it (0 if unknown).
        fps_hz: Average source frame rate in Hz (0 if unknown).
        codec_tag: The container's FourCC (e.g. ``MP43``, ``cvid``), 4 characters in
            FFmpeg's little-endian order, or "" if none.
        pix_fmt: FFmpeg pixel format name of the coded frames (``yuv420p``,
            ``yuv422p10le``, ...), or "" if unknown.
        bits_per_coded_sample: Bits per coded pixel as the container declares it
            (e.g. 24 in an AVI ``BITMAPINFOHEADER``), 0 if unknown.
        profile: FFmpeg profile name (``High``, ``Main 10``, ...), or "" if unknown.
        level: Codec level as FFmpeg numbers it (e.g. 30 for H.264 3.0),
            :data:`LEVEL_UNKNOWN` if unknown.
        sample_aspect_ratio: Pixel aspect ratio as (numerator, denominator); (0, 1) if
            unknown.
        field_order: FFmpeg ``AVFieldOrder`` (0 unknown, 1 progressive, 2-5 interlaced).
        color_range: FFmpeg ``AVColorRange`` (0 unspecified, 1 limited, 2 full).
        color_primaries: FFmpeg ``AVColorPrimaries`` (2 unspecified).
        color_trc: FFmpeg ``AVColorTransferCharacteristic`` (2 unspecified).
        colorspace: FFmpeg ``AVColorSpace``, the YUV matrix (2 unspecified).
        video_delay: Frames of reordering delay (B-frames) the stream declares.
    """

    codec_name: str
    extradata: bytes = b""
    width: int = 0
    height: int = 0
    fps_hz: float = 0.0
    codec_tag: str = ""
    pix_fmt: str = ""
    bits_per_coded_sample: int = 0
    profile: str = ""
    level: int = LEVEL_UNKNOWN
    sample_aspect_ratio: tuple[int, int] = (0, 1)
    field_order: int = 0
    color_range: int = 0
    color_primaries: int = 2
    color_trc: int = 2
    colorspace: int = 2
    video_delay: int = 0


def _codec_context(params: CodecParams) -> VideoCodecContext:
    """A decoder with every codec parameter set on it (FFmpeg opens it on the first packet).

    Raises:
        UnknownCodecError: If FFmpeg has no decoder named ``params.codec_name``.
        MediaError: If a parameter is invalid (an unknown pixel format, a tag that is
            not 4 characters, a value out of range).
    """
    try:
        codec = av.CodecContext.create(params.codec_name, "r")
    except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError) as exc:
        raise UnknownCodecError(f"no decoder for codec {params.codec_name!r}: {exc}") from None
    if not isinstance(codec, VideoCodecContext):  # FFmpeg wraps every video decoder in this class
        raise UnknownCodecError(f"codec {params.codec_name!r} is not a video codec")
    try:
        if params.extradata:
            codec.extradata = params.extradata
        codec.width, codec.height = params.width, params.height
        if params.codec_tag:
            codec.codec_tag = params.codec_tag
        if params.pix_fmt:
            codec.pix_fmt = params.pix_fmt
        codec.bits_per_coded_sample = params.bits_per_coded_sample
        if params.profile:
            codec.profile = params.profile
        codec.level = params.level
        num, den = params.sample_aspect_ratio
        if num > 0 and den > 0:
            codec.sample_aspect_ratio = Fraction(num, den)
        codec.field_order = params.field_order
        codec.color_range = params.color_range
        codec.color_primaries = params.color_primaries
        codec.color_trc = params.color_trc
        codec.colorspace = params.colorspace
        codec.reorder_depth = params.video_delay
    except (ValueError, OverflowError, TypeError, UnicodeEncodeError) as exc:
        raise MediaError(f"invalid codec parameters for {params.codec_name}: {exc}") from None
    codec.thread_count = 1
    return codec


class VideoDecoder:
    """Decodes one stream's compressed packets into model-grid frames.

    Decoding starts at the first keyframe; packets before it are counted in
    :attr:`skipped_before_keyframe`. A packet FFmpeg cannot decode raises
    :class:`CorruptPacketError` and leaves the decoder usable for the next packet.

    Args:
        params: Codec parameters from the stream header.
        grid: Model grid to resample to.
        max_source_pixels: Largest accepted source frame (width x height).

    Raises:
        UnknownCodecError: If FFmpeg has no decoder named ``params.codec_name``.
        OversizedFrameError: If the header announces a frame larger than the limit.
        MediaError: If another codec parameter is invalid.
    """

    def __init__(
        self, params: CodecParams, *, grid: ModelGrid = ModelGrid(), max_source_pixels: int = MAX_SOURCE_PIXELS
    ) -> None:
        if params.width * params.height > max_source_pixels:
            raise OversizedFrameError(
                f"source frame {params.width}x{params.height} exceeds the limit of {max_source_pixels} pixels"
            )
        self._codec = _codec_context(params)
        # One reformatter per stream keeps FFmpeg's scaler context between frames
        # (``VideoFrame.reformat`` builds a new one per call: 5x slower, same pixels).
        self._scaler = VideoReformatter()
        self.grid = grid
        self.params = params
        self.max_source_pixels = max_source_pixels
        self._started = False
        self._next_tick_s: float | None = None
        self._last_pts_s: float | None = None
        self.decoded = 0
        self.emitted = 0
        self.skipped_before_keyframe = 0

    def decode(self, data: bytes, *, pts_s: float | None, keyframe: bool) -> list[ModelFrame]:
        """Decode one compressed packet.

        Args:
            data: Compressed packet bytes.
            pts_s: Presentation time in seconds, or None if unknown.
            keyframe: Whether the packet is a keyframe.

        Returns:
            Model-grid frames that became due (zero, one, or more).

        Raises:
            CorruptPacketError: If FFmpeg rejects the packet.
            OversizedFrameError: If a decoded frame exceeds the size limit.
        """
        if not self._started:
            if not keyframe:
                self.skipped_before_keyframe += 1
                return []
            self._started = True
        packet = av.Packet(data)
        packet.time_base = _PTS_TIME_BASE
        if pts_s is not None:
            packet.pts = round(pts_s * 1_000_000)
        return self._decode_packet(packet)

    def flush(self) -> list[ModelFrame]:
        """Drain frames the decoder still holds (call at end of stream).

        Raises:
            CorruptPacketError: If FFmpeg fails while draining.
        """
        if not self._started or not self._codec.is_open:
            return []  # nothing went in, or the codec never opened: nothing to drain
        return self._decode_packet(None)

    def _decode_packet(self, packet: av.Packet | None) -> list[ModelFrame]:
        try:
            frames = self._codec.decode(packet)
        except av.error.EOFError:
            return []
        except (av.error.FFmpegError, ValueError) as exc:
            raise CorruptPacketError(f"{self.params.codec_name} packet could not be decoded: {exc}") from None
        out = []
        for frame in frames:
            self.decoded += 1
            if frame.width * frame.height > self.max_source_pixels:
                raise OversizedFrameError(
                    f"decoded frame {frame.width}x{frame.height} exceeds the limit of "
                    f"{self.max_source_pixels} pixels"
                )
            pts_s = self._frame_time(frame)
            if self._next_tick_s is None:
                self._next_tick_s = pts_s
            if pts_s + 1e-6 < self._next_tick_s:
                continue
            step_s = 1.0 / self.grid.fps_hz
            while self._next_tick_s <= pts_s + 1e-6:
                self._next_tick_s += step_s
            rgb = self._scaler.reformat(frame, width=self.grid.width, height=self.grid.height,
                                        format="rgb24").to_ndarray()
            self.emitted += 1
            out.append(ModelFrame(pts_s=pts_s, rgb=rgb))
        return out

    def _frame_time(self, frame: av.VideoFrame) -> float:
        if frame.pts is not None:
            pts_s = frame.pts / 1_000_000
        elif self._last_pts_s is not None:
            pts_s = self._last_pts_s + 1.0 / (self.params.fps_hz or self.grid.fps_hz)
        else:
            pts_s = 0.0
        self._last_pts_s = pts_s
        return pts_s


def open_container(source: str, *, timeout_s: float = 10.0) -> av.container.InputContainer:
    """Open a file, a URL PyAV can read (rtsp, srt, http) or ``-`` (MPEG-TS on stdin).

    Raises:
        MediaError: If the source cannot be opened or holds no video stream.
    """
    import sys

    try:
        if source == "-":
            container = av.open(sys.stdin.buffer, mode="r", format="mpegts")
        else:
            container = av.open(source, mode="r", timeout=timeout_s)
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(f"cannot open {source!r}: {exc}") from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{source!r} has no video stream")
    return container


def codec_params(stream: av.video.stream.VideoStream) -> CodecParams:
    """Read every codec parameter the demuxer reported for a video stream.

    Raises:
        UnknownCodecError: If FFmpeg has no decoder for the stream's codec.
    """
    ctx = stream.codec_context
    if ctx is None:
        raise UnknownCodecError(f"no decoder for the codec of video stream {stream.index}")
    rate = stream.average_rate or stream.guessed_rate or 0
    try:
        tag = ctx.codec_tag
    except UnicodeDecodeError:  # PyAV reads tags as ASCII; a binary tag cannot travel as one
        log.debug("codec tag of %s is not ASCII: not carried", ctx.name)
        tag = ""
    sar = ctx.sample_aspect_ratio
    return CodecParams(
        codec_name=ctx.name,
        extradata=bytes(ctx.extradata or b""),
        width=ctx.width,
        height=ctx.height,
        fps_hz=float(rate),
        codec_tag="" if tag == "\0\0\0\0" else tag,
        pix_fmt=ctx.pix_fmt or "",
        bits_per_coded_sample=ctx.bits_per_coded_sample,
        profile=ctx.profile or "",
        level=ctx.level,
        sample_aspect_ratio=(sar.numerator, sar.denominator) if sar else (0, 1),
        field_order=ctx.field_order,
        color_range=ctx.color_range,
        color_primaries=ctx.color_primaries,
        color_trc=ctx.color_trc,
        colorspace=ctx.colorspace,
        video_delay=ctx.reorder_depth,
    )


def packet_time_s(packet: av.Packet) -> float | None:
    """Presentation time of a demuxed packet in seconds (falls back to its dts)."""
    ts = packet.pts if packet.pts is not None else packet.dts
    if ts is None or packet.time_base is None:
        return None
    return float(ts * packet.time_base)


def iter_model_frames(path: str | Path, *, grid: ModelGrid = ModelGrid()) -> Iterator[ModelFrame]:
    """Demux and decode a video file into model-grid frames, as the live decoder does.

    Corrupt packets are skipped (as live); a file with no decodable frame yields nothing.

    Args:
        path: Video file path (any container and codec FFmpeg reads).
        grid: Model grid to resample to.

    Yields:
        :class:`ModelFrame` with ``rgb`` uint8 [grid.height, grid.width, 3].

    Raises:
        MediaError: If the file cannot be opened, or its codec is unknown.
    """
    container = open_container(str(path))
    try:
        stream = container.streams.video[0]
        decoder = VideoDecoder(codec_params(stream), grid=grid)
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            try:
                yield from decoder.decode(bytes(packet), pts_s=packet_time_s(packet), keyframe=packet.is_keyframe)
            except CorruptPacketError as exc:
                log.warning("%s: %s", path, exc)
        yield from decoder.flush()
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot read {path}: {exc}") from None
    finally:
        container.close()
