"""TTS stage: commentary text deltas (``.text``) → speech PCM chunks (``.audio``).

A line is spoken while it is being written: each stream's
:class:`~models.speech.phrases.LineSpeaker` cuts the arriving words into phrases (the
first after two words, or one word and 0.15 s; later ones at clause ends, at 12 words,
at the end of the line, or when their words have waited 0.5 s) and each phrase is
synthesised (Piper by default, espeak-ng as the fallback:
:func:`~models.speech.engine.load_speech`) and published at once
(:meth:`~actors.stage.Stage.publish_now`), before the next is made. Its PCM goes out in
chunks of :attr:`TtsStage.chunk_s` seconds, each stamped with the video time it starts
at: the line's first word plus the offset in the line's audio, which runs on from
phrase to phrase without gaps or overlaps. Each chunk's ``text`` is the line so far.

Piper costs 0.1-0.5 s of one core per second of speech, and one replica speaks its
streams one phrase at a time: on a small machine it cannot voice many busy streams. So a
line whose first delta waited in this stage's queue longer than :attr:`TtsStage.late_s`
(the stage is behind: Piper's first phrase would come too late) is spoken by espeak-ng
(~15 ms a line) and the backlog drains; the next line that is on time gets Piper again.
And Piper's CPU is bounded, so that speech never takes the cores the video path needs
(on the 2-core machine 12 sessions held at real time with Piper within 0.1 core, and
0 of 12 with Piper speaking every line: docs/PERFORMANCE.md): a line starting while the replica's Piper
synthesis over the last :attr:`TtsStage.voice_window_s` averaged more than
:attr:`TtsStage.voice_cores` of a core is spoken by espeak-ng too (:class:`VoiceLoad`).

Counters (on ``status``): ``lines``, ``late_lines`` (spoken by espeak-ng because late),
``busy_lines`` (spoken by espeak-ng because Piper was at its CPU bound), ``phrases``,
``samples`` and, per voice that spoke, ``speech_ms.<engine name>`` (audio made) and
``synth_ms.<engine name>`` (time spent making it): their ratio is the voice's
real-time factor (:func:`speech_figures`).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.stage import Session, Stage, StageOptions
from models.speech.engine import SpeechConfig, SpeechEngine, load_speech
from models.speech.espeak import EspeakEngine
from models.speech.phrases import LineSpeaker, PhrasePolicy, SpokenPhrase
from streams import messages as m


@dataclass
class TtsState:
    """Per-stream TTS state.

    Attributes:
        voice: Speaks lines with the stage's voice.
        fallback: Speaks late lines with espeak-ng (None when that is the stage's voice).
        speaker: The one of them speaking the current line.
        utterance: Number of the line being spoken; None between lines.
        pts_s: Video time of the line's first delta, seconds.
        capture_ts: Capture time (Unix seconds) carried by the line's first delta.
        text: The line's text so far.
        arrivals: ``(seq, time.monotonic())`` of each delta queued and not yet handled.
    """

    voice: LineSpeaker
    fallback: LineSpeaker | None
    speaker: LineSpeaker
    utterance: int | None = None
    pts_s: float = 0.0
    capture_ts: float = 0.0
    text: str = ""
    arrivals: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=1024))

    def waited_s(self, message: m.TextDelta) -> float:
        """Seconds ``message`` waited in the queue (0 if its arrival is unknown); forgets older entries."""
        while self.arrivals and self.arrivals[0][0] < message.seq:
            self.arrivals.popleft()  # dropped from the queue
        if self.arrivals and self.arrivals[0][0] == message.seq:
            return time.monotonic() - self.arrivals.popleft()[1]
        return 0.0


class VoiceLoad:
    """CPU seconds a voice spent synthesising over a sliding window, per second: the
    cores it used on average (synthesis runs on the stage's thread, so time is CPU time)."""

    def __init__(self, window_s: float) -> None:
        """Args:
            window_s: Window length, seconds (> 0).

        Raises:
            ValueError: If ``window_s`` is not positive.
        """
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._spent: deque[tuple[float, float]] = deque()  # (monotonic end time, synthesis seconds)

    def add(self, synth_s: float, now_s: float) -> None:
        """Records ``synth_s`` seconds of synthesis that ended at ``now_s`` (monotonic seconds)."""
        self._spent.append((now_s, synth_s))

    def cores(self, now_s: float) -> float:
        """Synthesis seconds per second over the window ending at ``now_s``; forgets older entries."""
        while self._spent and self._spent[0][0] < now_s - self.window_s:
            self._spent.popleft()
        return sum(s for _, s in self._spent) / self.window_s


class TtsStage(Stage):
    """Speaks commentary lines phrase by phrase as their words arrive, streamed as PCM chunks."""

    name = "tts"
    input_kind = "text"
    output_kind = "audio"
    accepts = (m.TextDelta, m.EndOfStream)
    chunk_s = 0.25
    #: A line whose first delta waited longer than this in the queue is spoken by espeak-ng, seconds.
    late_s = 0.15
    #: Cores the stage's voice may use on average over :attr:`voice_window_s`; beyond, lines go to espeak-ng.
    voice_cores = 0.1
    #: Window of :attr:`voice_cores`, seconds.
    voice_window_s = 10.0

    def __init__(self, options: StageOptions, *, speech: SpeechConfig = SpeechConfig(),
                 phrases: PhrasePolicy = PhrasePolicy()) -> None:
        super().__init__(options)
        self.engine: SpeechEngine = load_speech(speech)
        self.fallback: SpeechEngine | None = None
        if not isinstance(self.engine, EspeakEngine):
            fallback = EspeakEngine(speech.espeak)
            if fallback.sample_rate_hz == self.engine.sample_rate_hz:  # one stream, one sample rate
                self.fallback = fallback
        self.policy = phrases
        self.voice_load = VoiceLoad(self.voice_window_s)

    def new_state(self, stream: str) -> TtsState:
        voice = LineSpeaker(self.engine, self.policy)
        fallback = LineSpeaker(self.fallback, self.policy) if self.fallback is not None else None
        return TtsState(voice=voice, fallback=fallback, speaker=voice)

    async def on_accept(self, session: Session, message: m.Message, raw: bytes) -> None:
        if isinstance(message, m.TextDelta):
            session.state.arrivals.append((message.seq, time.monotonic()))

    def start_line(self, state: TtsState, message: m.TextDelta, *, waited_s: float) -> str:
        """Starts a line at its first delta, which waited ``waited_s`` in the queue: with
        the stage's voice, or with espeak-ng if that is longer than :attr:`late_s` or the
        voice is over its CPU bound (:attr:`voice_cores`).

        Returns:
            Why espeak-ng speaks it instead of the stage's voice: ``"late"``, ``"busy"``,
            or ``""`` when the stage's voice speaks it.
        """
        why = ""
        if state.fallback is not None:
            why = ("late" if waited_s > self.late_s
                   else "busy" if self.voice_load.cores(time.monotonic()) > self.voice_cores else "")
        state.speaker = state.fallback if why and state.fallback is not None else state.voice
        state.speaker.reset()
        state.utterance, state.pts_s, state.capture_ts, state.text = (
            message.utterance, message.pts_s, message.capture_ts, "")
        return why

    def process(self, session: Session, message: m.Message) -> list[m.Message]:
        assert isinstance(message, m.TextDelta)
        state: TtsState = session.state
        waited_s = state.waited_s(message)
        if message.utterance != state.utterance:  # a new line (also if the last one never ended)
            why = self.start_line(state, message, waited_s=waited_s)
            if why:
                session.counters[f"{why}_lines"] += 1
        state.text += message.text
        engine = state.speaker.engine
        for phrase in state.speaker.speak(message.text, now_s=time.monotonic(), final=message.final):
            session.counters["phrases"] += 1
            session.counters["samples"] += phrase.pcm.size
            session.counters[f"speech_ms.{engine.name}"] += round(1000 * phrase.pcm.size / engine.sample_rate_hz)
            session.counters[f"synth_ms.{engine.name}"] += round(1000 * phrase.synth_s)
            if engine is self.engine:
                self.voice_load.add(phrase.synth_s, time.monotonic())
            self.publish_now([(session, self._chunks(session, message, phrase))])
        if message.final:
            if state.text.strip():
                session.counters["lines"] += 1
            state.utterance = None
        return []

    def _chunks(self, session: Session, message: m.TextDelta, phrase: SpokenPhrase) -> list[m.Message]:
        state: TtsState = session.state
        rate = self.engine.sample_rate_hz
        step = max(1, int(self.chunk_s * rate))
        return [
            m.AudioChunk(
                stream=session.stream, seq=self.next_seq(session),
                pts_s=state.pts_s + phrase.offset_s + start / rate, capture_ts=state.capture_ts,
                utterance=message.utterance, pcm=m.Array.from_numpy(phrase.pcm[start:start + step]),
                sample_rate_hz=rate, text=state.text.strip(),
            )
            for start in range(0, phrase.pcm.size, step)
        ]


def speech_figures(tts_counters: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Speech figures of a run from the TTS stage's final counters of each stream.

    Args:
        tts_counters: The ``counters`` of the ``tts`` stage's last status, one per stream.

    Returns:
        ``lines``, ``late_lines`` (spoken by espeak-ng because late), ``busy_lines``
        (because the voice was at its CPU bound), ``phrases``, ``phrases_per_line`` and,
        per voice, ``speech_s`` (audio made), ``synth_s`` (time spent making it) and
        ``real_time_factor`` (``synth_s / speech_s``; None without speech).
    """
    totals: dict[str, int] = defaultdict(int)
    for counters in tts_counters:
        for key, value in counters.items():
            if key in ("lines", "late_lines", "busy_lines", "phrases") or key.startswith(("speech_ms.", "synth_ms.")):
                totals[key] += int(value)
    voices = {}
    for name in sorted(key.removeprefix("speech_ms.") for key in totals if key.startswith("speech_ms.")):
        speech_ms, synth_ms = totals[f"speech_ms.{name}"], totals[f"synth_ms.{name}"]
        voices[name] = {"speech_s": round(speech_ms / 1000, 3), "synth_s": round(synth_ms / 1000, 3),
                        "real_time_factor": round(synth_ms / speech_ms, 3) if speech_ms else None}
    lines, phrases = totals["lines"], totals["phrases"]
    return {"lines": lines, "late_lines": totals["late_lines"], "busy_lines": totals["busy_lines"], "phrases": phrases,
            "phrases_per_line": round(phrases / lines, 2) if lines else None, "voices": voices}
