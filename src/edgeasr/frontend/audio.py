"""Read audio as 16 kHz mono float32 in [-1, 1] (the model's rate)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

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


@dataclass(frozen=True)
class AudioFacts:
    """What a reader should know about a file beyond its samples."""

    rate: int  # the file's own sample rate (the samples are resampled to SAMPLE_RATE)
    truncated: bool  # the WAV header promises more data than the file holds


def wav_truncated(path: Path) -> bool:
    """True when a RIFF/WAVE file's `data` chunk declares more bytes than follow it (a cut copy:
    libsndfile silently reads what is there). Unknown sizes (0, 0xFFFFFFFF: streamed WAVs) pass."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, length = f.read(4), int.from_bytes(f.read(4), "little")
            if chunk_id == b"data":
                return length not in (0, 0xFFFFFFFF) and pos + 8 + length > size
            pos += 8 + length + (length & 1)
    return False


def read_audio_with_facts(path: str | Path) -> Tuple[np.ndarray, AudioFacts]:
    """(N,) float32 at 16 kHz (channel 0 of multi-channel files) and the file's facts; errors name the file."""
    path = Path(path)
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, soundfile.LibsndfileError) as exc:
        raise EdgeAsrError(f"{path}: cannot read audio ({exc})") from None
    if data.shape[0] == 0:
        raise EdgeAsrError(f"{path}: audio is empty")
    return resample(np.ascontiguousarray(data[:, 0]), rate), AudioFacts(rate, wav_truncated(path))


def read_audio(path: str | Path) -> np.ndarray:
    """(N,) float32 at 16 kHz; channel 0 of multi-channel files; errors name the file."""
    return read_audio_with_facts(path)[0]
