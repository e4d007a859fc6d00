"""Global CMVN statistics -> (mean, istd), computed like WeNet (float64, variance floor 1e-20)."""

import json
import math
from pathlib import Path
from typing import List, Tuple

import numpy as np

from ..errors import EdgeAsrError


def mean_istd(sums: List[float], squares: List[float], count: float) -> Tuple[np.ndarray, np.ndarray]:
    """Per-dimension sums, sums of squares and frame count -> float32 mean and 1/std."""
    means, istd = [], []
    for s, sq in zip(sums, squares):
        mean = s / count
        var = max(sq / count - mean * mean, 1.0e-20)
        means.append(mean)
        istd.append(1.0 / math.sqrt(var))
    return np.asarray(means, dtype=np.float32), np.asarray(istd, dtype=np.float32)


def _load_json(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    try:
        stats = json.loads(path.read_text())
        return mean_istd(list(stats["mean_stat"]), list(stats["var_stat"]), float(stats["frame_num"]))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise EdgeAsrError(f"{path}: not a JSON cmvn file with mean_stat/var_stat/frame_num ({exc})") from None


def _load_kaldi_text(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    raw = path.read_bytes()
    if raw.startswith(b"\0B"):
        raise EdgeAsrError(
            f"{path}: Kaldi binary cmvn is not supported; write it with compute-cmvn-stats --binary=false"
        )
    arr = raw.decode("utf-8", errors="replace").split()
    if len(arr) < 6 or arr[0] != "[" or arr[-1] != "]" or arr[-2] != "0":
        raise EdgeAsrError(f"{path}: not a Kaldi text cmvn matrix ('[ sums count squares 0 ]')")
    dim = (len(arr) - 4) // 2
    values = [float(v) for v in arr[1:-1]]
    return mean_istd(values[:dim], values[dim + 1 : 2 * dim + 1], values[dim])


def load_cmvn(path: str | Path, is_json: bool | None = None) -> Tuple[np.ndarray, np.ndarray]:
    """(F,) mean and (F,) inverse std; format from `is_json`, or sniffed from the first byte."""
    path = Path(path)
    if not path.is_file():
        raise EdgeAsrError(f"{path}: cmvn file not found")
    if is_json is None:
        is_json = path.read_bytes().lstrip()[:1] == b"{"
    return _load_json(path) if is_json else _load_kaldi_text(path)


def cmvn_stats_json(feats: List[np.ndarray]) -> dict:
    """WeNet's global_cmvn JSON ({mean_stat, var_stat, frame_num}) from (T, F) feature matrices."""
    sums = np.zeros(feats[0].shape[1], dtype=np.float64)
    squares = np.zeros_like(sums)
    frames = 0
    for f in feats:
        f64 = f.astype(np.float64)
        sums += f64.sum(0)
        squares += (f64 * f64).sum(0)
        frames += f.shape[0]
    return {"mean_stat": sums.tolist(), "var_stat": squares.tolist(), "frame_num": frames}
