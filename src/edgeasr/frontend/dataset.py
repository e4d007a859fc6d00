"""A data.list read for decoding: features once per utterance, one policy for unusable utterances,
and a report of what a user should know about their data.

The policy, the same in every stage that reads a list (eval_torch, eval_onnx, eval_bpu,
eval_quant, the export parity checks, calibrate, compile's dev split, the demo trainer):
- unreadable or empty audio: stop, naming the list, the line and the file. Skipping would give
  every artifact the same silent gap and a CER over fewer utterances than the user thinks.
- shorter than one output frame of the model (right context + 1 feature frames: 15 frames,
  0.16 s at conv2d8): skipped and counted. No streaming model (WeNet's runtimes included) produces
  anything for it, so it cannot tell two exports apart; it is real data, so the list stays usable.
- reported, with a warning naming the first few: files resampled to 16 kHz (by rate), truncated
  WAVs (decoded as far as they go), duplicate keys (each line is still decoded) and reference
  characters missing from units.txt (scored as they are: no model can output them).
"""

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np
from tqdm import tqdm

from ..errors import EdgeAsrError
from .audio import SAMPLE_RATE, read_audio_with_facts
from .datalist import Utterance, read_data_list
from .fbank import compute_fbank

log = logging.getLogger(__name__)
SHOWN = 3  # keys named in a warning


@dataclass
class PreparedUtterance:
    utt: Utterance
    feats: np.ndarray  # (T, 80)
    seconds: float
    feature_seconds: float  # time spent reading audio and computing fbank


@dataclass
class PreparedSet:
    utterances: List[PreparedUtterance]
    report: Dict[str, object]  # counts for metrics: listed, used, skipped_too_short, resampled, ...


def _warn(data_list: Path, what: str, keys: List[str]) -> None:
    if keys:
        shown = ", ".join(keys[:SHOWN]) + (" ..." if len(keys) > SHOWN else "")
        log.warning("%s: %d %s (%s)", data_list, len(keys), what, shown)


@dataclass
class ScannedUtterance:
    """An utterance the policy keeps, without its features (they are computed where it is decoded)."""

    utt: Utterance
    seconds: float


@dataclass
class ScannedSet:
    utterances: List[ScannedUtterance]
    report: Dict[str, object]


def load_utterances(data_list: Path, max_utts: int, min_frames: int,
                    symbols: Optional[Mapping[str, int]] = None) -> PreparedSet:
    """The first `max_utts` utterances (0 = all) with features; see the module docstring for what
    is skipped, what stops and what is reported. `min_frames`: feature frames of one output frame."""
    used: List[PreparedUtterance] = []

    def keep(u: Utterance, audio: np.ndarray, start: float) -> None:
        used.append(PreparedUtterance(u, compute_fbank(audio), len(audio) / SAMPLE_RATE, time.perf_counter() - start))

    report = _apply_policy(data_list, max_utts, min_frames, symbols, keep)
    return PreparedSet(used, report)


def scan_utterances(data_list: Path, max_utts: int, min_frames: int,
                    symbols: Optional[Mapping[str, int]] = None) -> ScannedSet:
    """What `load_utterances` keeps and reports, without computing features: the same policy (the
    frame count of an utterance follows from its samples), for a caller that ships audio to workers."""
    used: List[ScannedUtterance] = []
    report = _apply_policy(data_list, max_utts, min_frames, symbols,
                           lambda u, audio, _: used.append(ScannedUtterance(u, len(audio) / SAMPLE_RATE)))
    return ScannedSet(used, report)


def fbank_frames(samples: int) -> int:
    """Feature frames compute_fbank makes of `samples` samples (25 ms windows, 10 ms shift, snip_edges)."""
    window, shift = SAMPLE_RATE * 25 // 1000, SAMPLE_RATE * 10 // 1000
    return 0 if samples < window else 1 + (samples - window) // shift


def _apply_policy(data_list: Path, max_utts: int, min_frames: int, symbols: Optional[Mapping[str, int]],
                  keep: Callable[[Utterance, np.ndarray, float], None]) -> Dict[str, object]:
    """Read every listed utterance once, apply the module's policy, call keep(utt, audio, start time)
    for each kept one; returns the report."""
    utts = read_data_list(data_list)
    if max_utts > 0:
        utts = utts[:max_utts]
    short: List[str] = []
    rates: Dict[int, List[str]] = {}
    truncated: List[str] = []
    kept = 0
    for u in tqdm(utts, desc=f"features {data_list.parent.name}", unit="utt"):
        start = time.perf_counter()
        try:
            audio, facts = read_audio_with_facts(u.wav)
        except EdgeAsrError as exc:
            raise EdgeAsrError(f"{data_list}:{u.line}: {exc}") from None
        if facts.rate != SAMPLE_RATE:
            rates.setdefault(facts.rate, []).append(u.key)
        if facts.truncated:
            truncated.append(u.key)
        if fbank_frames(len(audio)) < min_frames:
            short.append(u.key)
            continue
        keep(u, audio, start)
        kept += 1
    duplicates = [key for key, n in Counter(u.key for u in utts).items() if n > 1]
    oov = Counter(c for u in utts for c in u.txt if symbols is not None and not c.isspace() and c not in symbols)
    _warn(data_list, f"utterances shorter than {min_frames} feature frames, skipped", short)
    for rate, keys in sorted(rates.items()):
        _warn(data_list, f"files at {rate} Hz, resampled to {SAMPLE_RATE}", keys)
    _warn(data_list, "truncated WAV files (decoded as far as they go)", truncated)
    _warn(data_list, "keys listed more than once", duplicates)
    _warn(data_list, "reference characters missing from units.txt", [f"{c!r}" for c, _ in oov.most_common()])
    if not kept:
        raise EdgeAsrError(f"{data_list}: no utterance is long enough to decode ({min_frames} feature frames)")
    return {
        "listed": len(utts),
        "used": kept,
        "skipped_too_short": len(short),
        "resampled": sum(len(keys) for keys in rates.values()),
        "truncated": len(truncated),
        "duplicate_keys": len(duplicates),
        "oov_reference_chars": sum(oov.values()),
    }
