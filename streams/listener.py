"""Viewer side: receive one stream's commentary text, speech and status from NATS.

:class:`Listener` subscribes to ``<prefix>.live.<stream>.>``, assembles commentary lines
from text deltas, keeps the speech chunks, the stages' status reports and, per subject,
the latency from capture to arrival. It writes ``commentary.vtt`` (WebVTT),
``commentary.wav`` (each line's speech placed at its video time) and a report dict.
"""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streams import messages as m
from streams.bus import connect
from streams.errors import SchemaError
from streams.subjects import (
    StreamSubject,
    all_stream_subjects,
    parse_stream_subject,
    stream_subject,
    validate_stream_id,
)

log = logging.getLogger(__name__)


@dataclass
class Line:
    """One commentary line as received.

    Attributes:
        utterance: Line number within the stream.
        start_s: Video time of the first word, seconds.
        end_s: Video time of the last delta, seconds.
        text: The line's text.
        capture_ts: Capture time (Unix seconds) of the video the first word was decided on.
        first_text_wall: Wall-clock arrival of the first word (Unix seconds).
        final_text_wall: Wall-clock arrival of the final delta (Unix seconds), 0 if open.
        first_audio_wall: Wall-clock arrival of the first speech chunk, 0 if none yet.
    """

    utterance: int
    start_s: float
    end_s: float
    text: str = ""
    capture_ts: float = 0.0
    first_text_wall: float = 0.0
    final_text_wall: float = 0.0
    first_audio_wall: float = 0.0


@dataclass
class SpeechChunk:
    """A received speech chunk: int16 [N] PCM at ``sample_rate_hz`` starting at ``pts_s``."""

    pts_s: float
    pcm: np.ndarray
    sample_rate_hz: int


def _percentiles_ms(values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {}
    p50, p99 = np.percentile(np.asarray(values_s) * 1000.0, [50, 99])
    return {"p50": round(float(p50), 1), "p99": round(float(p99), 1), "n": len(values_s)}


def _vtt_time(seconds: float) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rest = divmod(ms, 3_600_000)
    mi, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{mi:02d}:{s:02d}.{ms:03d}"


@dataclass
class Listener:
    """Collects everything one stream sends back.

    Args:
        stream: Stream id.
        nats_url: NATS server URL.
        prefix: Subject prefix.
        on_line: Called with each finished :class:`Line`.
        on_status: Called with each :class:`~streams.messages.Status`.
        on_end: Called with the kind (``frames``, ``audio``, ...) of each subject whose
            :class:`~streams.messages.EndOfStream` arrives; ``frames`` ending means the
            decoder is done with the stream.
        kinds: Subjects to follow (default: every subject of the stream); a load test
            follows only ``tokens``, ``text``, ``audio`` and ``status``.

    Attributes:
        timeline: ``(arrival wall time, kind, capture→arrival latency)`` of every
            tokens, text and audio message, in arrival order (seconds).
    """

    stream: str
    nats_url: str
    prefix: str = "mmd"
    on_line: Callable[[Line], None] | None = None
    on_status: Callable[[m.Status], None] | None = None
    on_end: Callable[[str], None] | None = None
    kinds: tuple[StreamSubject, ...] | None = None
    timeline: list[tuple[float, str, float]] = field(default_factory=list)
    lines: dict[int, Line] = field(default_factory=dict)
    speech: list[SpeechChunk] = field(default_factory=list)
    statuses: list[m.Status] = field(default_factory=list)
    final_counters: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrival_latency_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    message_counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tokens_total: int = 0
    key_views: int = 0
    encoder_calls: int = 0
    media_span_s: list[float] = field(default_factory=lambda: [float("inf"), 0.0])
    malformed: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _nc: Any = None

    def __post_init__(self) -> None:
        validate_stream_id(self.stream)

    async def start(self) -> None:
        """Connect and subscribe to every subject of the stream.

        Raises:
            TransportError: If NATS cannot be reached.
        """
        self._nc = await connect(self.nats_url, name=f"mmd-listen-{self.stream}", max_reconnect_attempts=3)
        subjects = ([stream_subject(self.stream, kind, prefix=self.prefix) for kind in self.kinds] if self.kinds
                    else [all_stream_subjects(self.stream, prefix=self.prefix)])
        for subject in subjects:
            await self._nc.subscribe(subject, cb=self._on_message, pending_bytes_limit=256 * 1024 * 1024)

    async def stop(self) -> None:
        """Unsubscribe and close the connection."""
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()

    async def _on_message(self, msg: Any) -> None:
        arrived = time.time()
        _, kind = parse_stream_subject(msg.subject, prefix=self.prefix)
        try:
            message = m.decode(msg.data, m.Message)  # stream subjects carry no session messages
        except SchemaError as exc:
            self.malformed += 1
            log.debug("malformed message on %s: %s", msg.subject, exc)
            return
        if isinstance(message, m.EndOfStream):
            if kind == "audio":
                self.ended.set()
            if self.on_end is not None:
                self.on_end(kind)
            return
        self.message_counts[kind] += 1
        if kind != "status":
            self.arrival_latency_s[kind].append(arrived - message.capture_ts)
            if kind in ("tokens", "text", "audio"):
                self.timeline.append((arrived, kind, arrived - message.capture_ts))
        if isinstance(message, m.Tokens):
            self.tokens_total += message.tokens.shape[0] if message.tokens.shape else 0
            self.key_views += int(message.is_key)
            self.encoder_calls += int(message.views is not None)
            self.media_span_s[0] = min(self.media_span_s[0], message.pts_s)
            self.media_span_s[1] = max(self.media_span_s[1], message.pts_s)
        elif isinstance(message, m.TextDelta):
            self._on_text(message, arrived)
        elif isinstance(message, m.AudioChunk):
            self._on_audio(message, arrived)
        elif isinstance(message, m.Status):
            self.statuses.append(message)
            if message.level == "info" and message.code == "counters":
                counters = {"received": 0, "emitted": 0, "dropped": 0, **message.counters}
                self.final_counters[message.stage] = {"counters": counters, "latency_ms": message.latency_ms}
            if self.on_status is not None:
                self.on_status(message)

    def _on_text(self, delta: m.TextDelta, arrived: float) -> None:
        line = self.lines.get(delta.utterance)
        if line is None:
            line = self.lines[delta.utterance] = Line(
                delta.utterance, delta.pts_s, delta.pts_s, capture_ts=delta.capture_ts, first_text_wall=arrived)
        line.text += delta.text
        line.end_s = delta.pts_s
        if delta.final:
            line.final_text_wall = arrived
            if self.on_line is not None and line.text.strip():
                self.on_line(line)

    def _on_audio(self, chunk: m.AudioChunk, arrived: float) -> None:
        try:
            pcm = chunk.pcm.to_numpy(dtype="int16", ndim=1)
        except SchemaError:
            self.malformed += 1
            return
        self.speech.append(SpeechChunk(chunk.pts_s, pcm.copy(), chunk.sample_rate_hz))
        line = self.lines.get(chunk.utterance)
        if line is not None and not line.first_audio_wall:
            line.first_audio_wall = arrived

    # -- outputs ------------------------------------------------------------------
    def finished_lines(self) -> list[Line]:
        """Lines with text, in order."""
        return [line for _, line in sorted(self.lines.items()) if line.text.strip()]

    def write_vtt(self, path: Path) -> Path:
        """Write the commentary as WebVTT, each cue from a line's first word to its end."""
        cues = ["WEBVTT", ""]
        for line in self.finished_lines():
            end = max(line.end_s, line.start_s + 0.4 * max(1, len(line.text.split())))
            cues += [f"{_vtt_time(line.start_s)} --> {_vtt_time(end)}", line.text.strip(), ""]
        path.write_text("\n".join(cues), encoding="utf-8")
        return path

    def write_wav(self, path: Path, *, duration_s: float | None = None) -> Path:
        """Write mono 16-bit speech, each chunk placed at its video time (overlaps are mixed).

        Args:
            path: Output ``.wav`` path.
            duration_s: Total length in seconds (default: up to the last chunk).
        """
        rate = self.speech[0].sample_rate_hz if self.speech else 22050
        end_s = max([c.pts_s + len(c.pcm) / rate for c in self.speech] + [duration_s or 0.0])
        mix = np.zeros(int(np.ceil(end_s * rate)) + 1, np.int32)
        for chunk in self.speech:
            start = int(round(chunk.pts_s * rate))
            mix[start:start + len(chunk.pcm)] += chunk.pcm[: max(0, len(mix) - start)]
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(np.clip(mix, -32768, 32767).astype("<i2").tobytes())
        return path

    def report(self) -> dict[str, Any]:
        """Figures of the run: per-stage counters and latency, tokens/s, end-to-end latency."""
        lines = self.finished_lines()
        span = self.media_span_s[1] - self.media_span_s[0] if self.tokens_total or self.key_views else 0.0
        steps = self.message_counts.get("tokens", 0)
        first_text = [ln.first_text_wall - ln.capture_ts for ln in lines if ln.first_text_wall]
        line_audio = [ln.first_audio_wall - ln.final_text_wall
                      for ln in lines if ln.first_audio_wall and ln.final_text_wall]
        word_audio = [ln.first_audio_wall - ln.first_text_wall for ln in lines if ln.first_audio_wall]
        return {
            "stream": self.stream,
            "stages": self.final_counters,
            "messages_received": dict(self.message_counts),
            "malformed_received": self.malformed,
            "capture_to_subject_latency_ms": {k: _percentiles_ms(v) for k, v in self.arrival_latency_s.items()},
            "bflow": {
                "steps": steps,
                "tokens": self.tokens_total,
                "key_views": self.key_views,
                "media_seconds": round(span, 3),
                "tokens_per_s": round(self.tokens_total / span, 2) if span > 0 else 0.0,
                # The image encoder looks only at the steps with a view: what B-Flow buys.
                "encoder_calls": self.encoder_calls,
                "encoder_calls_per_s": round(self.encoder_calls / span, 2) if span > 0 else 0.0,
            },
            "commentary": {
                "lines": len(lines),
                "capture_to_first_text_ms": _percentiles_ms(first_text),
                "line_end_to_first_audio_ms": _percentiles_ms(line_audio),
                "first_word_to_first_audio_ms": _percentiles_ms(word_audio),
            },
            "errors": [
                {"stage": s.stage, "code": s.code, "message": s.message} for s in self.statuses if s.level != "info"
            ],
        }
