"""espeak-ng speech synthesis through the library that `espeakng-loader` ships (no system package).

NOTE: espeak-ng keeps synthesis state in C statics that its API cannot reset (the wave generator's
pitch-flutter index and phase among them), so the same text and voice come out different after
different predecessors: measured, 43 959 / 44 242 / 43 971 samples for one sentence said three times
in one process, and seeding C `rand()` changes nothing. `Speaker` therefore loads a private copy of
the library afresh for every utterance (an in-memory file, dlopen'ed and dlclose'd around each
`say`): an utterance's samples depend only on its text and voice, whatever the process said before
(about 6 ms more per utterance). Two random generators feed the noise sources: espeak-ng's own
(breath noise, e.g. `victor`), seeded from the clock at initialisation, and the C library's `rand()`
(the Klatt voices' aspiration and frication, e.g. `Reed`, `caleb`); `say` takes a seed and sets both.
"""

import _ctypes
import ctypes
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Tuple

import espeakng_loader
import numpy as np

from ..errors import EdgeAsrError

_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_ESPEAK_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4
_LIBC = ctypes.CDLL(None)  # the process's C library: srand() for the Klatt voices' rand()
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
        # NOTE: a private copy, so that no other user of espeak-ng in this process keeps the library
        # loaded (dlclose would then keep its state) and nothing is left on disk.
        self._library_fd = os.memfd_create("edgeasr-espeak-ng")
        with open(espeakng_loader.get_library_path(), "rb") as f:
            os.write(self._library_fd, f.read())
        self.language = language
        self._chunks: List[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: espeak calls it later
        with self._fresh_library() as (_, sample_rate):
            self.sample_rate = sample_rate

    def __del__(self) -> None:
        os.close(self._library_fd)

    @contextmanager
    def _fresh_library(self) -> Iterator[Tuple[ctypes.CDLL, int]]:
        """(library, sample rate) with every C static at its initial value; unloaded on exit."""
        lib = ctypes.CDLL(f"/proc/self/fd/{self._library_fd}", mode=os.RTLD_LOCAL)
        try:
            lib.espeak_Initialize.restype = ctypes.c_int
            data_path = espeakng_loader.get_data_path().encode()
            sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
            if sample_rate <= 0:
                raise EdgeAsrError("espeak-ng failed to initialise from espeakng-loader's data")
            lib.espeak_SetSynthCallback(self._callback)
            yield lib, sample_rate
            lib.espeak_Terminate()
        finally:
            _ctypes.dlclose(lib._handle)

    def _collect(self, wav, num_samples: int, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def say(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        """(N,) float32 in [-1, 1] at `self.sample_rate`; the same samples for the same text, voice
        and seed (espeak-ng's noise generator), in any process."""
        with self._fresh_library() as (lib, _):
            lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
            _LIBC.srand(ctypes.c_uint(seed))
            if lib.espeak_SetVoiceByName(f"{self.language}+{voice.variant}".encode()) != 0:
                raise EdgeAsrError(f"espeak-ng has no voice {self.language}+{voice.variant}")
            lib.espeak_SetParameter(_RATE, voice.rate_wpm, 0)
            lib.espeak_SetParameter(_PITCH, voice.pitch, 0)
            lib.espeak_SetParameter(_RANGE, voice.pitch_range, 0)
            self._chunks = []
            data = text.encode("utf-8") + b"\0"
            lib.espeak_Synth(data, len(data), 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
            lib.espeak_Synchronize()
        if not self._chunks:
            raise EdgeAsrError(f"espeak-ng produced no audio for {text!r}")
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0
