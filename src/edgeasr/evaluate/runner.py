"""Decode test sets with any backend in several contexts (streaming, full) and score them.

Features are computed once per utterance and shared; the real-time factor of a context counts
feature extraction plus encoder plus search, divided by the audio duration.
"""

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ..decode import Backend, DecodeOptions, chunk_windows, recognize
from ..frontend.dataset import PreparedUtterance, prepare
from ..model.subsampling import min_input_frames
from ..params import check_streaming
from .cer import score

FRAME_SHIFT_MS = 10  # fbank frame shift


def decode_contexts(search: Any, streaming: Any, modes: Sequence[str] = (), full_context: bool = True
                    ) -> Dict[str, DecodeOptions]:
    """{"streaming": at streaming.chunk_size / num_decoding_left_chunks[, "full": whole utterance]} with
    one params section's search settings (`eval` or `compare`); `modes` narrows the section's modes."""
    check_streaming(streaming)
    common = dict(
        beam_size=search.beam_size,
        ctc_weight=search.ctc_weight,
        reverse_weight=search.reverse_weight,
        modes=tuple(m for m in search.modes if not modes or m in modes),
    )
    contexts = {"streaming": DecodeOptions(streaming.chunk_size, streaming.num_decoding_left_chunks, **common)}
    if full_context:
        contexts["full"] = DecodeOptions(-1, -1, **common)
    return contexts


def chunk_latency(backend: Backend, prepared: Sequence[PreparedUtterance], chunk_size: int,
                  decode_time: float) -> Dict[str, float]:
    """chunk_audio_ms: audio one chunk covers (the algorithmic latency: chunk x subsampling x 10 ms);
    chunk_compute_ms: decoding time per chunk at the measured thread count (encoder, CTC, search)."""
    chunks = sum(len(list(chunk_windows(p.feats.shape[0], backend.geometry, chunk_size))) for p in prepared)
    return {
        "chunk_audio_ms": chunk_size * backend.geometry.subsampling_rate * FRAME_SHIFT_MS,
        "chunk_compute_ms": round(1000.0 * decode_time / max(chunks, 1), 3),
    }


def detokenize(ids: List[int], id_to_token: Mapping[int, str]) -> str:
    """Token ids -> text; WeNet's BPE word marker '▁' becomes a space."""
    return "".join(id_to_token.get(i, "<unk>") for i in ids).replace("\u2581", " ").strip()


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
    id_to_token = {i: t for t, i in symbols.items()}
    hyps_dir.mkdir(parents=True, exist_ok=True)
    metrics: Dict[str, object] = {}
    min_frames = min_input_frames(backend.geometry.right_context)
    for name, data_list in test_sets.items():
        prepared = prepare(Path(data_list), max_utts, min_frames, symbols)
        metrics[name], hyps, _ = evaluate_set(backend, prepared.utterances, contexts, id_to_token)
        metrics[name]["data"] = prepared.report
        with open(hyps_dir / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for h in hyps:
                f.write(json.dumps(h, ensure_ascii=False) + "\n")
    return metrics
