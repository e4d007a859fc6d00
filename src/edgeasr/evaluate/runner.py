"""Decode test sets with any backend in several contexts (streaming, full) and score them: CER per
mode, real-time factor, chunk latency, hypotheses as JSON lines.

Features are computed once per utterance and shared; the real-time factor of a context counts
feature extraction plus encoder plus search, divided by the audio duration.
"""

import json
import time
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ..decode import Backend, DecodeOptions, chunk_windows, recognize
from ..frontend.dataset import PreparedUtterance, load_utterances
from ..frontend.fbank import FRAME_SHIFT_MS
from ..frontend.tokens import detokenize, id_to_token
from ..model.subsampling import min_input_frames
from .cer import score


def chunk_latency(backend: Backend, prepared: Sequence[PreparedUtterance], chunk_size: int,
                  decode_time: float) -> Dict[str, float]:
    """chunk_audio_ms: audio one chunk covers (the algorithmic latency: chunk x subsampling x 10 ms);
    chunk_compute_ms: decoding time per chunk at the measured thread count (encoder, CTC, search)."""
    chunks = sum(len(list(chunk_windows(p.feats.shape[0], backend.geometry, chunk_size))) for p in prepared)
    return {
        "chunk_audio_ms": int(chunk_size * backend.geometry.subsampling_rate * FRAME_SHIFT_MS),
        "chunk_compute_ms": round(1000.0 * decode_time / max(chunks, 1), 3),
    }


def evaluate_set(
    backend: Backend,
    prepared: List[PreparedUtterance],
    contexts: Mapping[str, DecodeOptions],
    id_to_token: Mapping[int, str],
) -> tuple:
    """-> (metrics for this set, per-utterance hypotheses, {context: per-utterance (T', V) CTC log-probs})."""
    hyps: List[dict] = [{"key": p.utt.key, "ref": p.utt.txt} for p in prepared]
    log_probs: Dict[str, List[np.ndarray]] = {context: [] for context in contexts}
    result: Dict[str, object] = {
        "utterances": len(prepared),
        "audio_seconds": round(sum(p.seconds for p in prepared), 2),
    }
    audio = sum(p.seconds for p in prepared)
    feature_time = sum(p.feature_seconds for p in prepared)
    for context, opts in contexts.items():
        decode_time = 0.0
        for p, h in zip(tqdm(prepared, desc=context, unit="utt"), hyps):
            start = time.perf_counter()
            rec = recognize(backend, p.feats, opts)
            decode_time += time.perf_counter() - start
            log_probs[context].append(rec.log_probs)
            h[context] = {mode: detokenize(ids, id_to_token) for mode, ids in rec.hyps.items()}
        result[context] = {mode: score((h["ref"], h[context][mode]) for h in hyps).as_dict() for mode in opts.modes}
        result[context]["rtf"] = round((feature_time + decode_time) / max(audio, 1e-9), 5)
        if opts.chunk_size > 0:
            result[context].update(chunk_latency(backend, prepared, opts.chunk_size, decode_time))
    return result, hyps, log_probs


def evaluate_sets(
    backend: Backend,
    test_sets: Mapping[str, str],
    contexts: Mapping[str, DecodeOptions],
    symbols: Mapping[str, int],
    max_utts: int,
    hyps_dir: Path,
) -> Dict[str, object]:
    """Every test set in every context; hypotheses to hyps_dir/<set>.jsonl; returns the metrics."""
    tokens = id_to_token(symbols)
    hyps_dir.mkdir(parents=True, exist_ok=True)
    metrics: Dict[str, object] = {}
    min_frames = min_input_frames(backend.geometry.right_context)
    for name, data_list in test_sets.items():
        prepared = load_utterances(Path(data_list), max_utts, min_frames, symbols)
        metrics[name], hyps, _ = evaluate_set(backend, prepared.utterances, contexts, tokens)
        metrics[name]["data"] = prepared.report
        with open(hyps_dir / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for h in hyps:
                f.write(json.dumps(h, ensure_ascii=False) + "\n")
    return metrics
