"""Unit tests for models.speech.espeak: real espeak-ng synthesis, CPU only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("espeakng_loader")

from models.speech.espeak import SpeechConfig, SpeechEngine, SpeechError

pytestmark = pytest.mark.timeout(60)

SAMPLE_RATE_HZ = 22050
MIN_RMS = 500.0  # int16 units; silence is 0, espeak-ng speech is a few thousand


def rms(audio: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def engine() -> Iterator[SpeechEngine]:
    with SpeechEngine() as eng:
        yield eng


def test_short_phrase_is_audible(engine: SpeechEngine) -> None:
    audio = engine.synthesize("goal for red")
    assert engine.sample_rate_hz == SAMPLE_RATE_HZ
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert 0.3 <= audio.size / SAMPLE_RATE_HZ <= 3.0
    assert rms(audio) > MIN_RMS


def test_longer_text_gives_longer_audio(engine: SpeechEngine) -> None:
    short = engine.synthesize("goal for red")
    long = engine.synthesize(
        "Goal for red! A curling shot from the edge of the box into the top corner."
    )
    assert long.size > 2 * short.size
    assert rms(long) > MIN_RMS


@pytest.mark.parametrize("text", ["", "   \n\t", "\x00"])
def test_blank_text_gives_no_samples(engine: SpeechEngine, text: str) -> None:
    audio = engine.synthesize(text)
    assert audio.dtype == np.int16 and audio.shape == (0,)


def test_non_ascii_text(engine: SpeechEngine) -> None:
    audio = engine.synthesize("Müller scores — 2–1 to München")
    assert audio.size / SAMPLE_RATE_HZ > 0.5 and rms(audio) > MIN_RMS


def test_two_engines_in_a_row() -> None:
    first = SpeechEngine()
    a = first.synthesize("goal for red")
    first.close()
    first.close()  # idempotent
    with pytest.raises(SpeechError, match="closed"):
        first.synthesize("goal for red")

    second = SpeechEngine()
    b = second.synthesize("goal for red")
    second.close()
    for audio in (a, b):
        assert rms(audio) > MIN_RMS
    # espeak-ng's output varies slightly between calls, never by much.
    assert abs(a.size - b.size) < 0.05 * a.size


def test_each_engine_keeps_its_own_rate() -> None:
    text = "The keeper holds it and looks for a quick throw."
    slow = SpeechEngine(SpeechConfig(rate_wpm=120))
    fast = SpeechEngine(SpeechConfig(rate_wpm=350))
    # Interleave so each call must re-apply its engine's settings.
    slow_1, fast_1, slow_2 = (
        slow.synthesize(text),
        fast.synthesize(text),
        slow.synthesize(text),
    )
    assert fast_1.size < 0.6 * slow_1.size
    assert abs(slow_1.size - slow_2.size) < 0.05 * slow_1.size


def test_unknown_voice_raises() -> None:
    with pytest.raises(SpeechError, match="unknown espeak-ng voice"):
        SpeechEngine(SpeechConfig(voice="no-such-voice"))
    # The failure leaves the shared library usable.
    assert rms(SpeechEngine().synthesize("goal for red")) > MIN_RMS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_wpm": 10},
        {"rate_wpm": 1000},
        {"pitch": -1},
        {"pitch": 101},
        {"voice": ""},
    ],
)
def test_invalid_config_raises(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SpeechConfig(**kwargs)  # type: ignore[arg-type]


def test_rejects_non_str(engine: SpeechEngine) -> None:
    with pytest.raises(TypeError):
        engine.synthesize(b"goal")  # type: ignore[arg-type]


def test_four_threads_at_once(engine: SpeechEngine) -> None:
    texts = [
        "goal for red",
        "corner kick to blue, taken short",
        "yellow card for the number six after a late challenge",
        "half time: red lead by two goals to one after a lively first forty-five minutes",
    ]
    reference = [engine.synthesize(t).size for t in texts]
    assert reference == sorted(reference)  # distinct lengths reveal any mix-up

    start = threading.Barrier(len(texts))

    def speak(text: str) -> npt.NDArray[np.int16]:
        start.wait()
        return engine.synthesize(text)

    for _ in range(3):
        with ThreadPoolExecutor(max_workers=len(texts)) as pool:
            results = list(pool.map(speak, texts))
        for text, expected, audio in zip(texts, reference, results, strict=True):
            assert abs(audio.size - expected) < 0.05 * expected, text
            assert rms(audio) > MIN_RMS, text
