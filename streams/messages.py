"""Every message MM-Duplex sends over NATS, as typed msgpack schemas.

Messages are frozen ``msgspec.Struct`` classes tagged by a ``kind`` field; one explicit
registry (:data:`MESSAGE_TYPES`) maps kinds to classes, never import paths. Arrays
travel as :class:`Array` (raw bytes + dtype + shape), never pickled. Each per-stream
message carries the schema version ``v``, the stream id, a sequence number ``seq``,
the media time ``pts_s`` (seconds on the stream's own clock) and ``capture_ts``, the
wall-clock time (Unix seconds) at which the broadcaster sent the source packet, so
every stage can measure end-to-end latency.

msgspec was chosen over hand-written msgpack dicts: it validates types while decoding
(one pass, in C) and turns every failure into one exception type we wrap as
:class:`~streams.errors.SchemaError`.
"""

from __future__ import annotations

import time
from typing import Literal, TypeVar, get_args, overload

import msgspec
import numpy as np

from streams.errors import SchemaError
from streams.subjects import validate_stream_id

SCHEMA_VERSION = 1

#: Array dtypes allowed on the wire.
WIRE_DTYPES = frozenset({"uint8", "int16", "int32", "int64", "float16", "float32"})

#: Largest array payload accepted in one message (NATS' default max payload is 1 MB).
MAX_ARRAY_BYTES = 1 << 20


class Array(msgspec.Struct, frozen=True, array_like=True):
    """An n-dimensional array on the wire: raw C-order bytes, dtype name and shape."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> Array:
        """Wrap a NumPy array of a dtype in :data:`WIRE_DTYPES`.

        Raises:
            SchemaError: If the dtype is not allowed on the wire.
        """
        dtype = array.dtype.name
        if dtype not in WIRE_DTYPES:
            raise SchemaError(f"dtype {dtype} cannot travel on the wire; use one of {sorted(WIRE_DTYPES)}")
        return cls(dtype, tuple(int(n) for n in array.shape), np.ascontiguousarray(array).tobytes())

    def to_numpy(self, *, dtype: str | None = None, ndim: int | None = None) -> np.ndarray:
        """Return a read-only NumPy view of the bytes, checking dtype, rank and size.

        Args:
            dtype: Expected dtype name, or None for any wire dtype.
            ndim: Expected number of dimensions, or None for any.

        Raises:
            SchemaError: On an unknown or unexpected dtype, rank, or a byte count that
                does not match the shape.
        """
        if self.dtype not in WIRE_DTYPES or (dtype is not None and self.dtype != dtype):
            raise SchemaError(f"expected dtype {dtype or sorted(WIRE_DTYPES)}, got {self.dtype}")
        if ndim is not None and len(self.shape) != ndim:
            raise SchemaError(f"expected a {ndim}-d array, got shape {list(self.shape)}")
        if any(n < 0 for n in self.shape):
            raise SchemaError(f"negative dimension in shape {list(self.shape)}")
        expected = int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize
        if expected != len(self.data) or len(self.data) > MAX_ARRAY_BYTES:
            raise SchemaError(
                f"array of {self.dtype} {list(self.shape)} needs {expected} bytes, got {len(self.data)}"
            )
        return np.frombuffer(self.data, dtype=self.dtype).reshape(self.shape)


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Fields common to every per-stream message.

    Attributes:
        v: Schema version; receivers reject other versions.
        stream: Stream id, ``[A-Za-z0-9_-]{1,64}``.
        seq: Sequence number, increasing by one per message of this kind and stream.
        pts_s: Media time in seconds on the stream's clock (presentation timestamp).
        capture_ts: Wall-clock time (Unix seconds) at which the source was captured.
    """

    v: int = SCHEMA_VERSION
    stream: str
    seq: int
    pts_s: float
    capture_ts: float


class StreamHeader(Message, frozen=True, kw_only=True, tag="stream_header"):
    """First message of a stream on ``.video``: what a decoder needs to open the codec.

    The codec fields are the demuxer's ``AVCodecParameters``, as
    :class:`models.vision.video.CodecParams` reads them; each has the default of a
    fresh FFmpeg decoder, so a header from an older producer, which sends only the
    name, extradata and size, still decodes.

    Attributes:
        codec_name: FFmpeg decoder name, e.g. ``h264``, ``mpeg4``, ``vp9``.
        extradata: Codec extradata (e.g. avcC for H.264 in MP4); may be empty.
        width: Frame width in pixels.
        height: Frame height in pixels.
        fps_hz: Average frame rate in Hz (0 if unknown).
        source: Human-readable name of the source (file name or URL), for logs.
        codec_tag: The container's FourCC (e.g. ``MP43``, ``cvid``), 4 characters, or
            "" if none.
        pix_fmt: FFmpeg pixel format name (e.g. ``yuv420p10le``), or "" if unknown.
        bits_per_coded_sample: Bits per coded pixel the container declares, 0 if unknown.
        profile: FFmpeg profile name (e.g. ``High 4:2:2``), or "" if unknown.
        level: Codec level as FFmpeg numbers it (e.g. 30 for H.264 3.0), -99 if unknown.
        sample_aspect_ratio: Pixel aspect ratio (numerator, denominator); (0, 1) if unknown.
        field_order: FFmpeg ``AVFieldOrder`` (0 unknown, 1 progressive, 2-5 interlaced).
        color_range: FFmpeg ``AVColorRange`` (0 unspecified, 1 limited, 2 full).
        color_primaries: FFmpeg ``AVColorPrimaries`` (2 unspecified).
        color_trc: FFmpeg ``AVColorTransferCharacteristic`` (2 unspecified).
        colorspace: FFmpeg ``AVColorSpace``, the YUV matrix (2 unspecified).
        video_delay: Frames of reordering delay (B-frames) the stream declares.
    """

    codec_name: str
    extradata: bytes = b""
    width: int
    height: int
    fps_hz: float = 0.0
    source: str = ""
    codec_tag: str = ""
    pix_fmt: str = ""
    bits_per_coded_sample: int = 0
    profile: str = ""
    level: int = -99
    sample_aspect_ratio: tuple[int, int] = (0, 1)
    field_order: int = 0
    color_range: int = 0
    color_primaries: int = 2
    color_trc: int = 2
    colorspace: int = 2
    video_delay: int = 0


class VideoPacket(Message, frozen=True, kw_only=True, tag="video_packet"):
    """One compressed video packet (no re-encode); ``pts_s`` is its presentation time.

    Attributes:
        data: Compressed bytes as demuxed by PyAV.
        dts_s: Decode timestamp in seconds, or None if the container gives none.
        duration_s: Packet duration in seconds (0 if unknown).
        keyframe: Whether the packet starts a keyframe (decoding can start here).
    """

    data: bytes
    dts_s: float | None = None
    duration_s: float = 0.0
    keyframe: bool = False


class EndOfStream(Message, frozen=True, kw_only=True, tag="end_of_stream"):
    """Last message of a stream on a subject; each stage forwards it downstream.

    Attributes:
        reason: ``eof`` for a normal end, otherwise the error code that ended it.
    """

    reason: str = "eof"


class Frame(Message, frozen=True, kw_only=True, tag="frame"):
    """A decoded frame resampled to the model grid (decoder → flow).

    Attributes:
        image: uint8 [H, W, 3] RGB at the model size.
    """

    image: Array


class Motion(Message, frozen=True, kw_only=True, tag="motion"):
    """A model-grid frame with its dense optical flow from the previous one (flow → tokenizer).

    Attributes:
        image: uint8 [H, W, 3] RGB.
        flow: float16 [H, W, 2] (dx, dy) in pixels per model step.
    """

    image: Array
    flow: Array


class Tokens(Message, frozen=True, kw_only=True, tag="tokens"):
    """B-Flow tokens and key-view features of one model step (tokenizer → commentator).

    Attributes:
        step: Model step index of this stream (5 Hz grid by default).
        tokens: float32 [N, D] token features; N may be 0 (nothing changed).
        is_key: Whether B-Flow took a key view (a full view on a scene change) at this step.
        motion_px: Mean optical-flow magnitude of the step, in pixels.
        views: float32 [K, V] rows of the pretrained image encoder's features of the
            frame with their regions (``models.vision.views``), on the steps where the
            encoder looked; None on the others.
    """

    step: int
    tokens: Array
    is_key: bool = False
    motion_px: float = 0.0
    views: Array | None = None


class TextDelta(Message, frozen=True, kw_only=True, tag="text"):
    """A piece of commentary text; ``pts_s`` is the video time it talks about.

    Attributes:
        utterance: Utterance (line) number within the stream.
        text: Text to append to the utterance (may be empty on the final delta).
        final: Whether this delta ends the utterance.
    """

    utterance: int
    text: str
    final: bool = False


class AudioChunk(Message, frozen=True, kw_only=True, tag="audio"):
    """A chunk of synthesised speech; ``pts_s`` is the video time it starts at.

    Attributes:
        utterance: Utterance number this chunk belongs to.
        pcm: int16 [N] mono PCM.
        sample_rate_hz: Sample rate of ``pcm`` in Hz.
        text: Text of the whole utterance (on every chunk, for listeners joining late).
    """

    utterance: int
    pcm: Array
    sample_rate_hz: int
    text: str = ""


#: Severity of a :class:`Status` report.
StatusLevel = Literal["info", "warning", "error"]


class Status(Message, frozen=True, kw_only=True, tag="status"):
    """An operator report from a stage about one stream: errors, drops, counters, lag.

    Attributes:
        stage: Stage name (``decoder``, ``flow``, ...).
        level: ``info`` (periodic or final counters), ``warning`` or ``error``.
        code: Error code (:attr:`streams.errors.MMDError.code`) or ``counters``.
        message: One-line human-readable reason.
        counters: Cumulative counts for this stream at this stage (e.g. ``received``,
            ``decoded``, ``dropped``, ``errors.schema``).
        latency_ms: Processing-time percentiles of this stage for this stream, e.g.
            ``{"p50": 3.1, "p99": 9.0}`` in milliseconds.
    """

    stage: str
    level: StatusLevel = "info"
    code: str = "counters"
    message: str = ""
    counters: dict[str, int] = {}
    latency_ms: dict[str, float] = {}


class OpenSession(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="open_session"):
    """Request on ``<prefix>.sessions.open``: a broadcaster asks to start a stream."""

    v: int = SCHEMA_VERSION
    stream: str


class CloseSession(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="close_session"):
    """Request on ``<prefix>.sessions.close``: the broadcaster ends a stream."""

    v: int = SCHEMA_VERSION
    stream: str


class SessionReply(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="session_reply"):
    """Reply of the session controller.

    Attributes:
        ok: Whether the request succeeded.
        stream: The stream id.
        subjects: Subject of each message kind of this stream (``video`` → ...).
        max_payload_bytes: Largest message the NATS server accepts.
        model_fps_hz: Model step rate in Hz.
        replicas: The replica of each stage the stream is assigned to.
        error_code: :attr:`streams.errors.MMDError.code` when ``ok`` is False.
        error: One-line reason when ``ok`` is False.
    """

    v: int = SCHEMA_VERSION
    ok: bool
    stream: str
    subjects: dict[str, str] = {}
    max_payload_bytes: int = 0
    model_fps_hz: float = 0.0
    replicas: dict[str, str] = {}
    error_code: str = ""
    error: str = ""


AnyMessage = (
    StreamHeader | VideoPacket | EndOfStream | Frame | Motion | Tokens | TextDelta | AudioChunk
    | Status | OpenSession | CloseSession | SessionReply
)

#: The one registry of message kinds: tag → class.
MESSAGE_TYPES: dict[str, type[msgspec.Struct]] = {cls.__struct_config__.tag: cls for cls in get_args(AnyMessage)}

#: A message class that :func:`decode` was told to expect.
_Expected = TypeVar("_Expected", bound=msgspec.Struct)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyMessage)


def encode(message: msgspec.Struct) -> bytes:
    """Serialise a message to msgpack bytes."""
    return _encoder.encode(message)


@overload
def decode(data: bytes) -> AnyMessage: ...
@overload
def decode(data: bytes, first: type[_Expected], /, *more: type[_Expected]) -> _Expected: ...
def decode(data: bytes, *expected: type[msgspec.Struct]) -> msgspec.Struct:
    """Parse msgpack bytes into a message, validating its schema.

    Args:
        data: Raw message bytes.
        *expected: Message classes acceptable here; none means any kind.

    Returns:
        The typed message.

    Raises:
        SchemaError: If the bytes are not msgpack, not a known kind, fail type
            validation, carry another schema version, an invalid stream id, or a kind
            not in ``expected``.
    """
    try:
        message = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SchemaError(f"malformed message ({len(data)} bytes): {exc}") from None
    if message.v != SCHEMA_VERSION:
        raise SchemaError(f"schema version {message.v} not supported (expected {SCHEMA_VERSION})")
    if expected and not isinstance(message, expected):
        names = ", ".join(str(cls.__struct_config__.tag) for cls in expected)
        raise SchemaError(f"unexpected message kind {message.__struct_config__.tag!r}; expected {names}")
    try:
        validate_stream_id(message.stream)
    except Exception as exc:  # StreamIdError is a MMDError, reported as schema here
        raise SchemaError(str(exc)) from None
    return message


def now() -> float:
    """Wall-clock time in Unix seconds (the clock of ``capture_ts``)."""
    return time.time()


