"""Unit tests for models.speech: real espeak-ng and Piper synthesis, CPU only.

The Piper tests skip when the voice is not fetched (``mmduplex fetch-models``) or
``piper-tts`` is not installed.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("espeakng_loader")

from models.speech.engine import SpeechConfig, load_speech
from models.speech.espeak import EspeakConfig, EspeakEngine, SpeechError
from models.speech.piper import VOICE, PiperEngine, PiperSettings, piper_voice_dir

pytestmark = pytest.mark.timeout(60)

needs_piper = pytest.mark.skipif(
    importlib.util.find_spec("piper") is None or not (piper_voice_dir() / f"{VOICE}.onnx").is_file(),
    reason="Piper voice not fetched (`mmduplex fetch-models`) or piper-tts not installed",
)

SAMPLE_RATE_HZ = 22050
MIN_RMS = 500.0  # int16 units; silence is 0, espeak-ng speech is a few thousand


def rms(audio: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def engine() -> Iterator[EspeakEngine]:
    with EspeakEngine() as eng:
        yield eng


def test_short_phrase_is_audible(engine: EspeakEngine) -> None:
    audio = engine.synthesize("goal for red")
    assert engine.sample_rate_hz == SAMPLE_RATE_HZ
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert 0.3 <= audio.size / SAMPLE_RATE_HZ <= 3.0
    assert rms(audio) > MIN_RMS


def test_longer_text_gives_longer_audio(engine: EspeakEngine) -> None:
    short = engine.synthesize("goal for red")
    long = engine.synthesize(
        "Goal for red! A curling shot from the edge of the box into the top corner."
    )
    assert long.size > 2 * short.size
    assert rms(long) > MIN_RMS


@pytest.mark.parametrize("text", ["", "   \n\t", "\x00"])
def test_blank_text_gives_no_samples(engine: EspeakEngine, text: str) -> None:
    audio = engine.synthesize(text)
    assert audio.dtype == np.int16 and audio.shape == (0,)


def test_non_ascii_text(engine: EspeakEngine) -> None:
    audio = engine.synthesize("Müller scores — 2–1 to München")
    assert audio.size / SAMPLE_RATE_HZ > 0.5 and rms(audio) > MIN_RMS


def test_two_engines_in_a_row() -> None:
    first = EspeakEngine()
    a = first.synthesize("goal for red")
    first.close()
    first.close()  # idempotent
    with pytest.raises(SpeechError, match="closed"):
        first.synthesize("goal for red")

    second = EspeakEngine()
    b = second.synthesize("goal for red")
    second.close()
    for audio in (a, b):
        assert rms(audio) > MIN_RMS
    # espeak-ng's output varies slightly between calls, never by much.
    assert abs(a.size - b.size) < 0.05 * a.size


def test_each_engine_keeps_its_own_rate() -> None:
    text = "The keeper holds it and looks for a quick throw."
    slow = EspeakEngine(EspeakConfig(rate_wpm=120))
    fast = EspeakEngine(EspeakConfig(rate_wpm=350))
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
        EspeakEngine(EspeakConfig(voice="no-such-voice"))
    # The failure leaves the shared library usable.
    assert rms(EspeakEngine().synthesize("goal for red")) > MIN_RMS


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
        EspeakConfig(**kwargs)  # type: ignore[arg-type]


def test_rejects_non_str(engine: EspeakEngine) -> None:
    with pytest.raises(TypeError):
        engine.synthesize(b"goal")  # type: ignore[arg-type]


def test_four_threads_at_once(engine: EspeakEngine) -> None:
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


# -- Piper ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def piper() -> Iterator[PiperEngine]:
    with PiperEngine() as eng:
        yield eng


@needs_piper
def test_piper_speaks_a_phrase(piper: PiperEngine) -> None:
    audio = piper.synthesize("goal for red")
    assert piper.name == f"piper:{VOICE}" and piper.sample_rate_hz == SAMPLE_RATE_HZ
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert 0.4 <= audio.size / SAMPLE_RATE_HZ <= 2.5
    assert rms(audio) > MIN_RMS
    # Not normalised per call: the raw output peaks well below full scale.
    assert np.abs(audio.astype(np.int32)).max() < 32767


@needs_piper
def test_piper_longer_text_gives_longer_audio_and_joins_sentences(piper: PiperEngine) -> None:
    short = piper.synthesize("goal for red")
    long = piper.synthesize("Goal for red! A curling shot from the edge of the box into the top corner.")
    assert long.size > 2.5 * short.size
    assert rms(long) > MIN_RMS


@needs_piper
@pytest.mark.parametrize("text", ["", "   \n\t", "\x00"])
def test_piper_blank_text_gives_no_samples(piper: PiperEngine, text: str) -> None:
    audio = piper.synthesize(text)
    assert audio.dtype == np.int16 and audio.shape == (0,)


@needs_piper
def test_piper_length_scale_slows_speech() -> None:
    text = "The keeper holds it and looks for a quick throw."
    with PiperEngine(PiperSettings(length_scale=1.5)) as slow, PiperEngine() as normal:
        assert slow.synthesize(text).size > 1.3 * normal.synthesize(text).size


@needs_piper
def test_piper_and_espeak_in_one_process(piper: PiperEngine, engine: EspeakEngine) -> None:
    # Piper bundles its own espeak-ng for phonemes; the two libraries must not interfere.
    for _ in range(2):
        assert rms(piper.synthesize("corner kick to blue")) > MIN_RMS
        assert rms(engine.synthesize("corner kick to blue")) > MIN_RMS


@needs_piper
def test_load_speech_defaults_to_piper() -> None:
    eng = load_speech()
    assert isinstance(eng, PiperEngine)
    eng.close()
    with pytest.raises(SpeechError, match="closed"):
        eng.synthesize("goal")


def test_missing_piper_voice_raises(tmp_path: Path) -> None:
    with pytest.raises(SpeechError, match="fetch-models"):
        PiperEngine(PiperSettings(voice_dir=tmp_path))


def test_load_speech_falls_back_to_espeak_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="models.speech.engine"):
        eng = load_speech(SpeechConfig(piper=PiperSettings(voice_dir=tmp_path)))
    assert isinstance(eng, EspeakEngine) and eng.name == "espeak-ng:en-us"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "espeak-ng instead of Piper" in warnings[0].getMessage()
    assert rms(eng.synthesize("goal for red")) > MIN_RMS


def test_load_speech_espeak_on_request(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        eng = load_speech(SpeechConfig(voice="espeak", espeak=EspeakConfig(rate_wpm=200)))
    assert isinstance(eng, EspeakEngine) and eng.config.rate_wpm == 200
    assert not caplog.records


@pytest.mark.parametrize(
    "make",
    [
        lambda: SpeechConfig(voice="kokoro"),  # type: ignore[arg-type]
        lambda: PiperSettings(threads=0),
        lambda: PiperSettings(length_scale=0.1),
        lambda: PiperSettings(volume=0.0),
    ],
)
def test_invalid_speech_settings_raise(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]
