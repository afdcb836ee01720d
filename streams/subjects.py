"""NATS subject names: the only place that builds them.

Subjects follow DESIGN.md §2: ``<prefix>.live.<stream>.<kind>`` per stream and
``<prefix>.sessions.open`` / ``.close`` for the control plane.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from streams.errors import StreamIdError

DEFAULT_PREFIX = "mmd"

StreamSubject = Literal["video", "frames", "motion", "tokens", "text", "audio", "status"]
STREAM_SUBJECTS: tuple[StreamSubject, ...] = get_args(StreamSubject)

_STREAM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def validate_stream_id(stream: str) -> str:
    """Check that ``stream`` is a valid stream id and return it.

    Args:
        stream: Candidate id; must match ``[A-Za-z0-9_-]{1,64}``.

    Returns:
        The same string.

    Raises:
        StreamIdError: If it is empty, too long, or holds dots, wildcards, spaces or
            other characters that would change the meaning of a NATS subject.
    """
    if not isinstance(stream, str) or not _STREAM_ID.fullmatch(stream):
        raise StreamIdError(
            f"invalid stream id {stream!r}: use 1-64 characters from A-Z a-z 0-9 _ - "
            "(no dots, spaces or wildcards)"
        )
    return stream


def _check_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise StreamIdError(f"invalid subject prefix {prefix!r}")
    return prefix


def stream_subject(stream: str, kind: StreamSubject, *, prefix: str = DEFAULT_PREFIX) -> str:
    """Return the subject of one stream's message kind, e.g. ``mmd.live.cam1.video``.

    Args:
        stream: Stream id (validated).
        kind: One of :data:`STREAM_SUBJECTS`.
        prefix: Subject prefix, default ``mmd``.

    Raises:
        StreamIdError: If ``stream`` or ``prefix`` is invalid.
        ValueError: If ``kind`` is not a known subject kind.
    """
    if kind not in STREAM_SUBJECTS:
        raise ValueError(f"unknown subject kind {kind!r}; expected one of {STREAM_SUBJECTS}")
    return f"{_check_prefix(prefix)}.live.{validate_stream_id(stream)}.{kind}"


def wildcard_subject(kind: StreamSubject, *, prefix: str = DEFAULT_PREFIX) -> str:
    """Return the subject matching ``kind`` on every stream, e.g. ``mmd.live.*.video``."""
    if kind not in STREAM_SUBJECTS:
        raise ValueError(f"unknown subject kind {kind!r}; expected one of {STREAM_SUBJECTS}")
    return f"{_check_prefix(prefix)}.live.*.{kind}"


def all_stream_subjects(stream: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """Return the subject matching every kind of one stream, e.g. ``mmd.live.cam1.>``."""
    return f"{_check_prefix(prefix)}.live.{validate_stream_id(stream)}.>"


def parse_stream_subject(subject: str, *, prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """Split a per-stream subject into ``(stream, kind)``.

    Raises:
        StreamIdError: If the subject is not ``<prefix>.live.<stream>.<kind>`` with a
            valid stream id and a known kind.
    """
    head = f"{prefix}.live."
    rest = subject[len(head):] if subject.startswith(head) else ""
    stream, _, kind = rest.partition(".")
    if kind not in STREAM_SUBJECTS:
        raise StreamIdError(f"not a stream subject: {subject!r}")
    return validate_stream_id(stream), kind


def session_subject(op: Literal["open", "close"], *, prefix: str = DEFAULT_PREFIX) -> str:
    """Return the control-plane request subject, ``<prefix>.sessions.open`` or ``.close``."""
    if op not in ("open", "close"):
        raise ValueError(f"unknown session operation {op!r}")
    return f"{_check_prefix(prefix)}.sessions.{op}"
