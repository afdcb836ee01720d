"""The fallback voice: espeak-ng, a formant synthesizer (a :class:`~models.speech.engine.SpeechEngine`).

`EspeakEngine.synthesize` turns a short commentary line into int16 mono PCM at
espeak-ng's native 22,050 Hz, in a few milliseconds on one CPU core.

Licensing: espeak-ng is GPL-3.0-or-later. MM-Duplex does not ship, vendor or modify
it: the PyPI wheel `espeakng-loader` installs an unmodified `libespeak-ng.so` and its
`espeak-ng-data`, and this module loads that shared library at run time with `ctypes`
(the public `speak_lib.h` API). Anyone distributing MM-Duplex together with that wheel
must honour espeak-ng's licence for the library itself.

espeak-ng keeps its synthesizer state in process globals. The library is therefore
loaded and initialised once per process (`_Espeak`, a lazy singleton); every
`EspeakEngine` shares it, and one process-wide lock serialises synthesis, so
`synthesize` is safe to call from several threads (e.g. `asyncio.to_thread`). Each
engine re-applies its own voice, rate and pitch when they differ from what was used
last. espeak-ng's output is not bit-exact between calls (its voicing has a little
randomness): the same text gives lengths within ~1 % of each other.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self

import numpy as np
import numpy.typing as npt

from streams.errors import SpeechError

logger = logging.getLogger(__name__)

# Constants from espeak-ng's speak_lib.h (API revision 12).
# espeak_AUDIO_OUTPUT: SYNCHRONOUS is RETRIEVAL (audio to our callback), but
# espeak_Synth returns only when synthesis is complete.
_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_POS_CHARACTER: Final = 1  # espeak_POSITION_TYPE
_ESPEAK_CHARS_UTF8: Final = 1  # espeak_Synth flags
_ESPEAK_INITIALIZE_DONT_EXIT: Final = 0x8000  # don't exit() if data is missing
_ESPEAK_RATE: Final = 1  # espeak_PARAMETER
_ESPEAK_PITCH: Final = 3  # espeak_PARAMETER
_EE_OK: Final = 0  # espeak_ERROR
_EE_NOT_FOUND: Final = 2  # espeak_ERROR
_BUFFER_MS: Final = 100  # audio per synth callback, ms

RATE_MIN_WPM: Final = 80  # espeakRATE_MINIMUM
RATE_MAX_WPM: Final = 450  # espeakRATE_MAXIMUM

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events); 0 = continue.
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class EspeakConfig:
    """Voice settings of one `EspeakEngine`."""

    # espeak-ng voice name (a file under espeak-ng-data/lang, case-insensitive):
    # "en-us", "en" (British), "en-gb-x-rp", "fr", "de". Not a BCP-47 tag: "en-gb"
    # and "fr-fr" are unknown.
    voice: str = "en-us"
    rate_wpm: int = 175  # words per minute, RATE_MIN_WPM..RATE_MAX_WPM
    pitch: int = 50  # base pitch, 0..100; 50 is the voice's own

    def __post_init__(self) -> None:
        if not self.voice or "\x00" in self.voice:
            raise ValueError(f"voice must be a non-empty name, got {self.voice!r}")
        if not RATE_MIN_WPM <= self.rate_wpm <= RATE_MAX_WPM:
            raise ValueError(
                f"rate_wpm must be in [{RATE_MIN_WPM}, {RATE_MAX_WPM}], got {self.rate_wpm}"
            )
        if not 0 <= self.pitch <= 100:
            raise ValueError(f"pitch must be in [0, 100], got {self.pitch}")


class _Espeak:
    """The process's one espeak-ng instance; use `_Espeak.get()`.

    Every method that touches the library must hold `lock`.
    """

    _instance: _Espeak | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls) -> _Espeak:
        """Returns the shared instance, loading and initialising espeak-ng on first use.

        Raises:
            SpeechError: the library or its data cannot be found or initialised.
        """
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise SpeechError(
                "espeak-ng is unavailable: the 'espeakng-loader' package is not installed"
            ) from exc
        lib_path = Path(espeakng_loader.get_library_path())
        try:
            data_dir = Path(espeakng_loader.get_data_path())
        except RuntimeError as exc:
            raise SpeechError(f"espeak-ng data directory not found: {exc}") from exc
        try:
            lib = ctypes.CDLL(str(lib_path))
        except OSError as exc:
            raise SpeechError(f"cannot load {lib_path}: {exc}") from exc

        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,  # text, NUL-terminated
            ctypes.c_size_t,  # size in bytes, including the NUL
            ctypes.c_uint,  # position
            ctypes.c_int,  # position_type
            ctypes.c_uint,  # end_position (0 = none)
            ctypes.c_uint,  # flags
            ctypes.c_void_p,  # unsigned int *unique_identifier
            ctypes.c_void_p,  # void *user_data
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int

        # `path` is the directory that contains espeak-ng-data.
        sample_rate_hz = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS,
            _BUFFER_MS,
            str(data_dir.parent).encode(),
            _ESPEAK_INITIALIZE_DONT_EXIT,
        )
        if sample_rate_hz <= 0:
            raise SpeechError(f"espeak_Initialize failed (returned {sample_rate_hz})")

        self.lock = threading.Lock()
        self.lib = lib
        self.sample_rate_hz: int = sample_rate_hz
        self._pcm = bytearray()  # samples of the synthesis in progress, native int16
        self._applied: EspeakConfig | None = None
        # The library keeps only the raw function pointer: hold the ctypes object for
        # the life of the process so it is never garbage-collected.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        version = lib.espeak_Info(None)
        logger.info(
            "espeak-ng %s initialised from %s, %d Hz",
            version.decode(errors="replace") if version else "?",
            lib_path,
            sample_rate_hz,
        )

    def _on_audio(self, wav: int | None, num_samples: int, events: int | None) -> int:
        # Called by espeak_Synth on the calling thread (synchronous mode), lock held.
        if wav and num_samples > 0:
            self._pcm.extend(ctypes.string_at(wav, 2 * num_samples))
        return 0

    def apply(self, config: EspeakConfig) -> None:
        """Makes `config` the library's current voice, rate and pitch; hold `lock`.

        Raises:
            SpeechError: the voice is unknown or a parameter is rejected.
        """
        if config == self._applied:
            return
        self._applied = None
        rc = self.lib.espeak_SetVoiceByName(config.voice.encode())
        if rc == _EE_NOT_FOUND:
            raise SpeechError(f"unknown espeak-ng voice {config.voice!r}")
        if rc != _EE_OK:
            raise SpeechError(f"espeak_SetVoiceByName({config.voice!r}) failed ({rc})")
        for name, param, value in (
            ("rate", _ESPEAK_RATE, config.rate_wpm),
            ("pitch", _ESPEAK_PITCH, config.pitch),
        ):
            rc = self.lib.espeak_SetParameter(param, value, 0)
            if rc != _EE_OK:
                raise SpeechError(f"espeak_SetParameter({name}={value}) failed ({rc})")
        self._applied = config

    def synthesize(self, text_utf8: bytes) -> bytearray:
        """Synthesizes non-empty UTF-8 text with the applied config; hold `lock`.

        Returns:
            Native-endian int16 mono samples at `sample_rate_hz`.

        Raises:
            SpeechError: espeak_Synth or espeak_Synchronize reports an error.
        """
        pcm = self._pcm = bytearray()
        rc = self.lib.espeak_Synth(
            text_utf8,
            len(text_utf8) + 1,
            0,
            _POS_CHARACTER,
            0,
            _ESPEAK_CHARS_UTF8,
            None,
            None,
        )
        if rc != _EE_OK:
            raise SpeechError(f"espeak_Synth failed ({rc})")
        rc = self.lib.espeak_Synchronize()
        if rc != _EE_OK:
            raise SpeechError(f"espeak_Synchronize failed ({rc})")
        self._pcm = bytearray()
        return pcm


class EspeakEngine:
    """Speaks text with espeak-ng; thread-safe, shares one espeak-ng per process.

    Attributes:
        config: voice, rate and pitch used by this engine.
        name: ``espeak-ng:<voice>``.
        sample_rate_hz: sample rate of `synthesize`'s output (espeak-ng's native 22,050).
    """

    def __init__(self, config: EspeakConfig = EspeakConfig()) -> None:
        """Loads espeak-ng (once per process) and checks the configured voice.

        Raises:
            SpeechError: espeak-ng cannot be loaded or initialised, or the voice is unknown.
        """
        self.config = config
        self.name = f"espeak-ng:{config.voice}"
        self._espeak = _Espeak.get()
        self.sample_rate_hz: int = self._espeak.sample_rate_hz
        self._closed = False
        with self._espeak.lock:
            self._espeak.apply(config)

    def synthesize(self, text: str) -> npt.NDArray[np.int16]:
        """Speaks `text` with this engine's voice, rate and pitch.

        Blocks for the synthesis (a few ms per sentence) and waits for any other
        engine's synthesis in progress: call it through `asyncio.to_thread` from async code.

        Args:
            text: plain text (not SSML); NUL characters are treated as spaces.

        Returns:
            audio: int16 [N] mono PCM at `sample_rate_hz`; N = 0 for blank text.

        Raises:
            SpeechError: the engine is closed or espeak-ng fails.
            TypeError: `text` is not a str.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        if self._closed:
            raise SpeechError("EspeakEngine is closed")
        text = text.replace("\x00", " ").strip()
        if not text:
            return np.zeros(0, dtype=np.int16)
        text_utf8 = text.encode("utf-8", errors="replace")
        start = time.perf_counter()
        with self._espeak.lock:
            self._espeak.apply(self.config)
            pcm = self._espeak.synthesize(text_utf8)
        audio = np.frombuffer(pcm, dtype=np.int16)
        logger.debug(
            "synthesized %d chars -> %.2f s of audio in %.1f ms",
            len(text),
            audio.size / self.sample_rate_hz,
            (time.perf_counter() - start) * 1e3,
        )
        return audio

    def close(self) -> None:
        """Closes this engine; idempotent.

        The shared espeak-ng instance stays loaded for the life of the process (it
        cannot be safely re-initialised), so other engines keep working.
        """
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
