"""Speech engines: the one interface the TTS stage speaks through, and the choice of voice.

Two voices implement :class:`SpeechEngine`:

* ``piper`` (default, :mod:`models.speech.piper`): Piper ``en_US-joe-medium``, a neural
  VITS voice; real-time factor ~0.1-0.2 on this 2-core machine, loads in ~1.5 s;
* ``espeak`` (fallback, :mod:`models.speech.espeak`): espeak-ng, a formant voice;
  ~15 ms a sentence, always installed.

:func:`load_speech` takes the configured voice and falls back to espeak-ng, with one
warning, when the Piper voice cannot be loaded (not fetched, or ``piper-tts`` missing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from models.speech.espeak import EspeakConfig, EspeakEngine
from models.speech.piper import PiperEngine, PiperSettings
from streams.errors import SpeechError

logger = logging.getLogger(__name__)

Voice = Literal["piper", "espeak"]
VOICES: tuple[Voice, ...] = ("piper", "espeak")


class SpeechEngine(Protocol):
    """Turns text into speech; implementations are thread-safe.

    Attributes:
        name: ``<engine>:<voice>``, e.g. ``piper:en_US-joe-medium``, ``espeak-ng:en-us``.
        sample_rate_hz: Sample rate of :meth:`synthesize`'s output, Hz.
    """

    name: str
    sample_rate_hz: int

    def synthesize(self, text: str) -> npt.NDArray[np.int16]:
        """Speaks ``text`` (blocking).

        Returns:
            audio: int16 [N] mono PCM at ``sample_rate_hz``; N = 0 for blank text.

        Raises:
            SpeechError: The engine is closed or synthesis fails.
        """
        ...

    def close(self) -> None:
        """Releases the engine; idempotent."""
        ...


@dataclass(frozen=True)
class SpeechConfig:
    """Which voice speaks, and the settings of each."""

    voice: Voice = "piper"  # "piper" (falls back to "espeak" when unavailable) or "espeak"
    piper: PiperSettings = PiperSettings()
    espeak: EspeakConfig = EspeakConfig()

    def __post_init__(self) -> None:
        if self.voice not in VOICES:
            raise ValueError(f"voice must be one of {', '.join(VOICES)}, got {self.voice!r}")


def load_speech(config: SpeechConfig = SpeechConfig()) -> SpeechEngine:
    """The engine of the configured voice; Piper falls back to espeak-ng with one warning.

    Raises:
        SpeechError: espeak-ng cannot be loaded (for ``espeak``, or as the fallback).
    """
    if config.voice == "piper":
        try:
            return PiperEngine(config.piper)
        except SpeechError as exc:
            logger.warning("speaking with espeak-ng instead of Piper: %s", exc)
    return EspeakEngine(config.espeak)
