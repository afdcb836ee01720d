"""Speech recognition labels: a clip whose audio is a known sentence, and line grouping on hand-made words."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from models.data.asr import (
    AsrConfig,
    LineConfig,
    SpeechRecognizer,
    Word,
    asr_model_dir,
    decode_audio,
    label_asr,
    label_dir_asr,
    words_to_lines,
)
from models.data.procedural import Line, read_transcript
from models.lm.vocab import words as vocab_words
from models.speech.engine import SpeechEngine, load_speech
from streams.errors import MediaError

SENTENCE = "The striker runs down the left wing and shoots the ball into the corner of the net."
LEAD_S = 1.0  # silence before the sentence
TAIL_S = 2.5  # silence after it (longer than the VAD's 2 s minimum silence, so speech ends there)
FPS = 10


def write_clip(path: Path, pcm: npt.NDArray[np.int16] | None, rate_hz: int, duration_s: float) -> Path:
    """An MP4: a moving gradient (H.264, 160x120, 10 fps) and, if given, ``pcm`` as AAC.

    Args:
        path: Output file.
        pcm: int16 [N] mono at ``rate_hz``, placed from media time 0; None: no audio track.
        rate_hz: Sample rate of ``pcm``.
        duration_s: Length of the video track, seconds.
    """
    with av.open(str(path), mode="w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream("aac", rate=rate_hz, layout="mono") if pcm is not None else None
        ramp = np.linspace(0, 255, 160, dtype=np.float32)
        for i in range(int(duration_s * FPS)):
            rgb = np.broadcast_to(((ramp + 8 * i) % 256).astype(np.uint8)[None, :, None], (120, 160, 3))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None and pcm is not None:
            for start in range(0, len(pcm), 1024):
                chunk = pcm[start:start + 1024]
                samples = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
                samples.sample_rate, samples.pts, samples.time_base = rate_hz, start, Fraction(1, rate_hz)
                out.mux(audio.encode(samples))
            out.mux(audio.encode(None))
    return path


def make_spoken_clip(path: Path, engine: SpeechEngine, text: str) -> tuple[Path, float, float]:
    """A clip whose audio track is ``text`` spoken by ``engine``, after LEAD_S and before TAIL_S of silence.

    Returns:
        ``(video, speech_start_s, speech_end_s)``: the first and last media times where
        the voice is audible (above 2 % of full scale).
    """
    rate = engine.sample_rate_hz
    speech = engine.synthesize(text)
    pcm = np.concatenate([np.zeros(int(LEAD_S * rate), np.int16), speech, np.zeros(int(TAIL_S * rate), np.int16)])
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 0.02 * 32767)
    return write_clip(path, pcm, rate, len(pcm) / rate), loud[0] / rate, loud[-1] / rate


def word_errors(said: list[str], text: str) -> int:
    """Word-level edit distance between recognised words and the vocabulary words of ``text``."""
    truth = vocab_words(text)
    row = list(range(len(truth) + 1))
    for i, x in enumerate(said, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(truth, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@pytest.fixture(scope="module")
def spoken_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float]:
    """SENTENCE spoken by the project's voice (Piper if fetched, else espeak-ng): see make_spoken_clip."""
    engine = load_speech()
    try:
        return make_spoken_clip(tmp_path_factory.mktemp("asr") / "commentary.mp4", engine, SENTENCE)
    finally:
        engine.close()


@pytest.fixture(scope="module")
def recognizer() -> SpeechRecognizer:
    if not (asr_model_dir() / "model.bin").is_file():
        pytest.skip("Whisper model not fetched (mmduplex fetch-models)")
    return SpeechRecognizer(AsrConfig(threads=2))


def test_decode_audio_resamples_to_16k_mono(tmp_path: Path) -> None:
    rate = 22_050
    t = np.arange(rate) / rate
    tone = (0.5 * 32767 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)  # 1 s at 440 Hz, after 0.5 s of silence
    video = write_clip(tmp_path / "tone.mp4", np.concatenate([np.zeros(rate // 2, np.int16), tone]), rate, 1.5)

    audio = decode_audio(video)

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 16_000 - 1.5) < 0.1  # AAC adds priming and pads its last frame
    loud = np.flatnonzero(np.abs(audio) > 0.1)
    assert abs(loud[0] / 16_000 - 0.5) < 0.03 and abs(loud[-1] / 16_000 - 1.5) < 0.03
    spectrum = np.abs(np.fft.rfft(audio[loud[0]:loud[-1]]))
    assert np.argmax(spectrum) * 16_000 / (loud[-1] - loud[0]) == pytest.approx(440.0, abs=3.0)
    assert 0.4 < np.max(np.abs(audio)) < 0.6


def test_label_asr_transcribes_the_sentence(recognizer: SpeechRecognizer,
                                            spoken_clip: tuple[Path, float, float]) -> None:
    video, speech_start_s, speech_end_s = spoken_clip
    json_path = label_asr(video, model=recognizer)

    assert json_path == video.with_suffix(".json")
    events, lines = read_transcript(video)
    assert events == [] and lines
    said = [w for line in lines for w in line.text.split()]
    assert word_errors(said, SENTENCE) <= 1, said
    for line in lines:
        assert line.text == " ".join(vocab_words(line.text))
        assert speech_start_s - 0.3 <= line.start_s <= line.end_s <= speech_end_s + 0.3, (line, speech_start_s,
                                                                                           speech_end_s)
    assert abs(lines[0].start_s - speech_start_s) < 0.5
    assert all(a.end_s <= b.start_s + 1e-6 for a, b in zip(lines, lines[1:], strict=False))
    data = json.loads(json_path.read_text())
    assert data["source"] == "asr" and data["asr_model"] == recognizer.name
    assert lines[0].start_s == data["words"][0]["start_s"]


def test_label_dir_asr_skips_a_video_without_audio(tmp_path: Path, recognizer: SpeechRecognizer,
                                                   spoken_clip: tuple[Path, float, float]) -> None:
    write_clip(tmp_path / "a_silent.mp4", None, 16_000, 1.0)
    spoken = tmp_path / "b_spoken.mp4"
    spoken.write_bytes(spoken_clip[0].read_bytes())
    (tmp_path / "notes.txt").write_text("not a video")
    seen: list[tuple[int, int, str, str | None]] = []

    written = label_dir_asr(tmp_path, model=recognizer,
                            progress=lambda done, total, video, error: seen.append(
                                (done, total, video.name, error.code if error else None)))

    assert written == [tmp_path / "b_spoken.json"]
    assert seen == [(1, 2, "a_silent.mp4", "media"), (2, 2, "b_spoken.mp4", None)]
    assert not (tmp_path / "a_silent.json").exists()


def test_video_without_audio_is_a_media_error(tmp_path: Path) -> None:
    video = write_clip(tmp_path / "silent.mp4", None, 16_000, 1.0)
    with pytest.raises(MediaError, match="no audio track"):
        label_asr(video)
    assert not video.with_suffix(".json").exists()


def test_not_a_video_is_a_media_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaError):
        decode_audio(bogus)


def _w(word: str, start_s: float, end_s: float) -> Word:
    return Word(word=word, start_s=start_s, end_s=end_s, probability=0.9)


def test_words_to_lines_splits_at_pauses_and_sentence_ends() -> None:
    words = [
        _w("Red", 0.5, 0.7), _w("passes", 0.75, 1.1), _w("wide.", 1.15, 1.5),  # sentence end
        _w("Blue", 1.6, 1.8), _w("wins", 1.85, 2.1), _w("it", 2.15, 2.3),
        _w("back,", 3.0, 3.3),  # 0.7 s pause before: a new line
        _w("—", 3.35, 3.4),  # no vocabulary word: dropped
        _w("and", 3.4, 3.5), _w("SHOOTS!", 3.55, 4.0),
    ]
    assert words_to_lines(words) == [
        Line(start_s=0.5, end_s=1.5, text="red passes wide"),
        Line(start_s=1.6, end_s=2.3, text="blue wins it"),
        Line(start_s=3.0, end_s=4.0, text="back and shoots"),
    ]


def test_words_to_lines_caps_long_lines_and_keeps_contractions() -> None:
    words = [_w(w, 0.3 * i, 0.3 * i + 0.25) for i, w in enumerate("he's through on goal now and".split())]
    lines = words_to_lines(words, LineConfig(max_pause_s=0.6, max_words=4))
    assert [line.text for line in lines] == ["he's through on goal", "now and"]
    assert lines[1].start_s == pytest.approx(1.2)
    assert words_to_lines([]) == []
    assert words_to_lines([_w("...", 0.0, 0.1)]) == []
