"""Read audio as 16 kHz mono float32 in [-1, 1] (the model's rate)."""

from pathlib import Path

import numpy as np
import soundfile
import soxr

from ..errors import EdgeAsrError

SAMPLE_RATE = 16000


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (libsoxr, high quality) of a 1-D float32 signal."""
    if rate == target:
        return samples
    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32)


def read_audio(path: str | Path) -> np.ndarray:
    """(N,) float32 at 16 kHz; channel 0 of multi-channel files; errors name the file."""
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, soundfile.LibsndfileError) as exc:
        raise EdgeAsrError(f"{path}: cannot read audio ({exc})") from None
    if data.shape[0] == 0:
        raise EdgeAsrError(f"{path}: audio is empty")
    return resample(np.ascontiguousarray(data[:, 0]), rate)
