"""The one error hierarchy of MM-Duplex.

Every error a user or an operator can meet derives from :class:`MMDError`. Each class
has a stable ``code`` that stages put on a stream's ``status`` subject and that the
CLIs print, so a failure can be counted and searched for without parsing prose.
"""

from __future__ import annotations


class MMDError(Exception):
    """Base class of all MM-Duplex errors.

    Attributes:
        code: Stable machine-readable name of the error kind (e.g. ``"schema"``).
    """

    code = "error"


class SchemaError(MMDError):
    """A message could not be decoded or does not match its schema."""

    code = "schema"


class StreamIdError(MMDError):
    """A stream id is not of the form ``[A-Za-z0-9_-]{1,64}`` (no dots, no wildcards)."""

    code = "stream_id"


class MediaError(MMDError):
    """Video input cannot be read: corrupt, truncated or not a video."""

    code = "media"


class UnknownCodecError(MediaError):
    """The stream's codec is not one FFmpeg (PyAV) can decode."""

    code = "unknown_codec"


class OversizedFrameError(MediaError):
    """A frame or packet exceeds the configured size limit."""

    code = "oversized"


class CorruptPacketError(MediaError):
    """A compressed packet failed to decode; it is counted and skipped."""

    code = "corrupt_packet"


class TransportError(MMDError):
    """The NATS server cannot be reached or went away."""

    code = "transport"


class SessionError(MMDError):
    """A session could not be opened or is not known to the controller."""

    code = "session"


class CapacityError(SessionError):
    """Every replica is full: no new session can be opened now."""

    code = "capacity"


class ModelError(MMDError):
    """A model checkpoint is missing, invalid or incompatible."""

    code = "model"


class SpeechError(MMDError):
    """The speech engine (espeak-ng) cannot be loaded or failed to synthesise."""

    code = "speech"


def error_from_code(code: str, message: str) -> MMDError:
    """The error whose class has ``code``, for an error that crossed NATS as its code.

    Args:
        code: An :attr:`MMDError.code` (e.g. ``"capacity"``).
        message: The error's one-line reason.

    Returns:
        An instance of the matching class (:class:`MMDError` itself if none matches).
    """
    stack: list[type[MMDError]] = [MMDError]
    while stack:
        cls = stack.pop()
        if cls.code == code:
            return cls(message)
        stack.extend(cls.__subclasses__())
    return MMDError(message)
