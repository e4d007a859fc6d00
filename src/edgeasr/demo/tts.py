"""espeak-ng speech synthesis through the library that `espeakng-loader` ships (no system package).

espeak-ng keeps global state, so one `Speaker` per process; synthesis is deterministic.
"""

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import List

import espeakng_loader
import numpy as np

from ..errors import EdgeAsrError

_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_ESPEAK_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Voice:
    variant: str  # espeak-ng voice variant (m1, f3, klatt2, ...)
    rate_wpm: int  # speaking rate, words per minute
    pitch: int  # base pitch 0..100
    pitch_range: int  # intonation range 0..100


def voice_variants() -> List[str]:
    """Every variant espeak-ng ships, sorted (the corpus splits voices by this list)."""
    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file())


class Speaker:
    """Mandarin (cmn) synthesis at espeak-ng's native rate (22050 Hz), int16 -> float32."""

    def __init__(self, language: str = "cmn"):
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self.sample_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if self.sample_rate <= 0:
            raise EdgeAsrError("espeak-ng failed to initialise from espeakng-loader's data")
        self.language = language
        self._chunks: List[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: espeak calls it later
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples: int, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def say(self, text: str, voice: Voice) -> np.ndarray:
        """(N,) float32 in [-1, 1] at `self.sample_rate`."""
        if self._lib.espeak_SetVoiceByName(f"{self.language}+{voice.variant}".encode()) != 0:
            raise EdgeAsrError(f"espeak-ng has no voice {self.language}+{voice.variant}")
        self._lib.espeak_SetParameter(_RATE, voice.rate_wpm, 0)
        self._lib.espeak_SetParameter(_PITCH, voice.pitch, 0)
        self._lib.espeak_SetParameter(_RANGE, voice.pitch_range, 0)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        self._lib.espeak_Synth(data, len(data), 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if not self._chunks:
            raise EdgeAsrError(f"espeak-ng produced no audio for {text!r}")
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0
