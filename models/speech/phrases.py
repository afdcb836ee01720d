"""Speaking a line while it is still being written: when to cut phrases, and audio that joins up.

The commentator sends a line word by word (up to 4 text tokens per 5 Hz step, each
forward pass published at once). Waiting for the end of the line before speaking costs
the line's writing time plus its whole synthesis (915 ms from first word to first audio,
measured with espeak-ng before this module). A :class:`LineSpeaker` speaks a line in
phrases instead, by the rules of :class:`PhrasePolicy`:

1. the **first phrase** goes as soon as ``first_words`` words are complete, at a clause
   end (``,;:.!?``) before that, or as soon as one word is complete and has waited
   ``first_wait_s``: a short first phrase is a short synthesis, so speech starts early;
2. **later phrases** go at a clause end once they hold ``min_words``, at ``max_words``,
   at the end of the line, or once ``min_words`` are complete and the first of them has
   waited ``hold_s`` (text slower than speech). Text normally runs far ahead of speech
   (4 words per 0.2 s step against ~2.5 spoken words per second), so the rest of a line
   is usually one or two long phrases, which keeps the voice's intonation;
3. a word is **complete** once whitespace follows it (or the line ends), so a word
   spread over several tokens is never cut;
4. each phrase's audio **starts where the previous one ended** (:attr:`SpokenPhrase.offset_s`):
   its leading silence is trimmed to ``head_s`` and, unless it ends the line, the
   silence the engine puts after it to ``pause_s``, so the phrases of a line make one
   contiguous utterance in media time.

Phrases are decided when a delta arrives (the caller has no timer): a phrase held back
goes with a later delta or the end of the line. Pure Python and NumPy: no NATS, no Ray;
:class:`PhraseSplitter` is the policy alone, on explicit times.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.speech.engine import SpeechEngine

_CLAUSE_END = (",", ";", ":", ".", "!", "?")
_LAST_SPACE = re.compile(r"\s\S*\Z")  # the last whitespace character of a text


@dataclass(frozen=True)
class PhrasePolicy:
    """When a line's words go to the speech engine (see the module docstring)."""

    first_words: int = 2  # the first phrase goes when this many words are complete
    first_wait_s: float = 0.15  # ... or when one is and has waited this long, seconds
    min_words: int = 2  # fewest words of a later phrase, unless the line ends
    max_words: int = 12  # longest phrase, words
    hold_s: float = 0.5  # a later phrase goes when its first word has waited this long, seconds
    head_s: float = 0.02  # leading silence kept on each phrase, seconds
    pause_s: float = 0.08  # trailing silence kept on a phrase that does not end its line, seconds
    silence_level: int = 300  # int16 amplitude up to which a sample counts as silence

    def __post_init__(self) -> None:
        if not 1 <= self.first_words <= self.max_words:
            raise ValueError(f"need 1 <= first_words <= max_words, got {self.first_words}, {self.max_words}")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        for name in ("first_wait_s", "hold_s", "head_s", "pause_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.silence_level < 32768:
            raise ValueError(f"silence_level must be in [0, 32767], got {self.silence_level}")


class PhraseSplitter:
    """Cuts one line's text, as it arrives, into phrases (the policy alone; see module docstring).

    Use :meth:`feed` for each piece of text, :meth:`finish` at the end of the line and
    :meth:`reset` before a new line.
    """

    def __init__(self, policy: PhrasePolicy = PhrasePolicy()) -> None:
        self.policy = policy
        self.reset()

    def reset(self) -> None:
        """Forgets the current line."""
        self._pending = ""  # text received and not yet cut into a phrase
        self._pending_since = 0.0  # arrival of the pending text's first word (caller's clock)
        self._phrases = 0  # phrases cut from this line

    def feed(self, text: str, now_s: float) -> list[str]:
        """Adds a piece of the line (tokens carry their leading space) received at ``now_s``.

        Returns:
            Phrases to speak now, in order (often none).
        """
        if not self._pending.strip() and text.strip():
            self._pending_since = now_s
        self._pending += text
        return self._cut(now_s, final=False)

    def finish(self) -> list[str]:
        """Ends the line: the rest of its text as phrases, in order."""
        return self._cut(0.0, final=True)

    def _cut(self, now_s: float, *, final: bool) -> list[str]:
        # Words followed by whitespace are complete; the text after the last one may not be.
        last_space = None if final else _LAST_SPACE.search(self._pending)
        if final:
            complete, rest = self._pending, ""
        elif last_space is None:
            complete, rest = "", self._pending
        else:
            complete, rest = self._pending[: last_space.start()], self._pending[last_space.start():]
        words = complete.split()
        phrases: list[str] = []
        while words and (n := self._length(words, now_s, final=final)):
            phrases.append(" ".join(words[:n]))
            words = words[n:]
            self._phrases += 1
            self._pending_since = now_s  # what is left counts as just arrived
        self._pending = " ".join(words) + rest if words else rest  # ``rest`` starts with whitespace
        return phrases

    def _length(self, words: list[str], now_s: float, *, final: bool) -> int:
        """Words of the next phrase out of the complete ``words`` (0: hold them back)."""
        p = self.policy
        if self._phrases == 0:
            target, least, wait_s = p.first_words, 1, p.first_wait_s
        else:
            target, least, wait_s = p.max_words, p.min_words, p.hold_s
        clause = next((i + 1 for i, w in enumerate(words[:target]) if w.endswith(_CLAUSE_END) and i + 1 >= least), 0)
        if clause:
            return clause
        if final:
            return min(len(words), p.max_words)
        if len(words) >= target or (len(words) >= least and now_s - self._pending_since >= wait_s):
            return min(len(words), target)
        return 0


@dataclass(frozen=True)
class SpokenPhrase:
    """One phrase of a line, synthesised.

    Attributes:
        text: The phrase's words.
        offset_s: Where its audio starts, seconds after the start of the line's audio.
        pcm: int16 [N] mono PCM at the engine's ``sample_rate_hz``.
        synth_s: Wall-clock seconds the synthesis took.
    """

    text: str
    offset_s: float
    pcm: npt.NDArray[np.int16]
    synth_s: float


class LineSpeaker:
    """Speaks one stream's lines phrase by phrase with a :class:`~models.speech.engine.SpeechEngine`.

    Per line: :meth:`reset`, then :meth:`speak` with each text delta in order (the last
    with ``final=True``). Not thread-safe: one speaker per stream.
    """

    def __init__(self, engine: SpeechEngine, policy: PhrasePolicy = PhrasePolicy()) -> None:
        self.engine = engine
        self.policy = policy
        self.splitter = PhraseSplitter(policy)
        self._offset = 0  # samples of the line spoken so far

    def reset(self) -> None:
        """Starts a new line."""
        self.splitter.reset()
        self._offset = 0

    def speak(self, text: str, *, now_s: float, final: bool = False) -> Iterator[SpokenPhrase]:
        """Takes a piece of the line received at ``now_s`` (``time.monotonic()`` seconds)
        and yields the phrases it completes, each as soon as it is synthesised.

        Args:
            text: The delta's text (a leading space separates it from the line so far).
            now_s: Arrival time of the delta, on the clock of ``time.monotonic``.
            final: Whether the line ends with this delta.

        Yields:
            The phrases to speak now, in order, their audio contiguous with the line's so far.

        Raises:
            SpeechError: The engine fails.
        """
        phrases = self.splitter.feed(text, now_s)
        if final:
            phrases += self.splitter.finish()
        for i, phrase in enumerate(phrases):
            start = time.perf_counter()
            pcm = self._trim(self.engine.synthesize(phrase), last=final and i == len(phrases) - 1)
            spoken = SpokenPhrase(phrase, self._offset / self.engine.sample_rate_hz, pcm, time.perf_counter() - start)
            self._offset += pcm.size
            yield spoken

    def _trim(self, pcm: npt.NDArray[np.int16], *, last: bool) -> npt.NDArray[np.int16]:
        """Trims leading silence to ``head_s`` and, unless ``last``, trailing silence to ``pause_s``."""
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > self.policy.silence_level)
        if loud.size == 0:
            return pcm[:0]
        rate = self.engine.sample_rate_hz
        start = max(0, int(loud[0]) - round(self.policy.head_s * rate))
        end = pcm.size if last else min(pcm.size, int(loud[-1]) + 1 + round(self.policy.pause_s * rate))
        return pcm[start:end]
