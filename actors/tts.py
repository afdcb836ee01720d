"""TTS stage: commentary text deltas (``.text``) → speech PCM chunks (``.audio``).

A line is spoken when the commentator ends it: espeak-ng (:mod:`models.speech.espeak`)
synthesises it and the PCM goes out in chunks of :attr:`TtsStage.chunk_s` seconds,
each stamped with the video time it starts at (the line's first word + the offset in
the line).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.stage import Session, Stage, StageOptions
from models.speech.espeak import SpeechConfig, SpeechEngine
from streams import messages as m


@dataclass
class TtsState:
    """Per-stream TTS state.

    Attributes:
        parts: Text deltas of the current line so far.
        pts_s: Video time of the line's first delta, seconds.
        capture_ts: Capture time (Unix seconds) carried by the line's first delta.
    """

    parts: list[str] = field(default_factory=list)
    pts_s: float = 0.0
    capture_ts: float = 0.0


class TtsStage(Stage):
    """Speaks each finished commentary line with espeak-ng, streamed as PCM chunks."""

    name = "tts"
    input_kind = "text"
    output_kind = "audio"
    accepts = (m.TextDelta, m.EndOfStream)
    chunk_s = 0.25

    def __init__(self, options: StageOptions, *, speech: SpeechConfig = SpeechConfig()) -> None:
        super().__init__(options)
        self.engine = SpeechEngine(speech)

    def new_state(self, stream: str) -> TtsState:
        return TtsState()

    def process(self, session: Session, message: m.Message) -> list[m.Message]:
        assert isinstance(message, m.TextDelta)
        state: TtsState = session.state
        if not state.parts:
            state.pts_s, state.capture_ts = message.pts_s, message.capture_ts
        state.parts.append(message.text)
        if not message.final:
            return []
        text = "".join(state.parts).strip()
        state.parts.clear()
        if not text:
            return []
        pcm = self.engine.synthesize(text)
        session.counters["lines"] += 1
        session.counters["samples"] += len(pcm)
        rate = self.engine.sample_rate_hz
        step = max(1, int(self.chunk_s * rate))
        return [
            m.AudioChunk(
                stream=session.stream, seq=self.next_seq(session), pts_s=state.pts_s + start / rate,
                capture_ts=state.capture_ts, utterance=message.utterance,
                pcm=m.Array.from_numpy(pcm[start:start + step]), sample_rate_hz=rate, text=text,
            )
            for start in range(0, len(pcm), step)
        ]
