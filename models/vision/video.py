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


@dataclass(frozen=True)
class CodecParams:
    """What a decoder needs to open a stream (see ``streams.messages.StreamHeader``).

    Attributes:
        codec_name: FFmpeg decoder name (``h264``, ``mpeg4``, ``vp9``, ...).
        extradata: Codec extradata bytes, possibly empty.
        width: Coded width in pixels (0 if unknown).
        height: Coded height in pixels (0 if unknown).
        fps_hz: Average source frame rate in Hz (0 if unknown).
    """

    codec_name: str
    extradata: bytes = b""
    width: int = 0
    height: int = 0
    fps_hz: float = 0.0


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
    """

    def __init__(
        self, params: CodecParams, *, grid: ModelGrid = ModelGrid(), max_source_pixels: int = MAX_SOURCE_PIXELS
    ) -> None:
        if params.width * params.height > max_source_pixels:
            raise OversizedFrameError(
                f"source frame {params.width}x{params.height} exceeds the limit of {max_source_pixels} pixels"
            )
        try:
            self._codec = av.CodecContext.create(params.codec_name, "r")
        except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError) as exc:
            raise UnknownCodecError(f"no decoder for codec {params.codec_name!r}: {exc}") from None
        if params.extradata:
            self._codec.extradata = params.extradata
        self._codec.thread_count = 1
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
        """Drain frames the decoder still holds (call at end of stream)."""
        if not self._started:
            return []
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
    """Read the codec parameters of a demuxed video stream."""
    ctx = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or 0
    return CodecParams(
        codec_name=ctx.name,
        extradata=bytes(ctx.extradata or b""),
        width=ctx.width,
        height=ctx.height,
        fps_hz=float(rate),
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
