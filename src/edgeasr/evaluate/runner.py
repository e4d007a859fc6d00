"""The one decoding loop: a backend over utterances in one context, one record per utterance, and the
records merged into what every report needs (CER per mode, real-time factor, chunk latency,
log-prob difference, cosine to float graphs).

Every evaluation decodes through `decode_records`: the reference (eval_torch, dev_reference), every
artifact (`evaluate.artifacts`), `by_chunk`, in this process or in a shard on a worker
(`evaluate.shards`). The records of shards merged in utterance order are the records of one serial
pass, so every number but the timings is the same however the work was split.
"""

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from ..decode import Backend, DecodeOptions, chunk_windows, recognize, stream_encode
from ..frontend.dataset import PreparedUtterance
from ..frontend.fbank import FRAME_SHIFT_MS
from ..frontend.tokens import detokenize
from ..similarity import PooledCosine, cosine_parts, max_abs_diff
from .cer import score

COSINE_TENSORS = ("encoder_out", "ctc_log_probs")


def decode_records(backend: Backend, prepared: Sequence[PreparedUtterance], opts: DecodeOptions,
                   id_to_token: Mapping[int, str], desc: str, keep_log_probs: bool = False,
                   reference_log_probs: Optional[Callable[[int], np.ndarray]] = None,
                   float_backend: Optional[Backend] = None) -> Tuple[List[dict], List[np.ndarray]]:
    """Decode every utterance with `opts` -> (one record per utterance, the kept (T', V) log-probs).
    reference_log_probs(i): the reference's log-probs of utterance i, for the largest |difference|;
    float_backend: the float graphs a quantized backend came from, streamed alike for the cosine."""
    records: List[dict] = []
    kept: List[np.ndarray] = []
    for index, p in enumerate(tqdm(prepared, desc=desc, unit="utt")):
        start = time.perf_counter()
        rec = recognize(backend, p.feats, opts)
        record: Dict[str, object] = {
            "key": p.utt.key, "seconds": p.seconds, "feature_seconds": p.feature_seconds,
            "decode_seconds": time.perf_counter() - start,
            "hyps": {mode: detokenize(ids, id_to_token) for mode, ids in rec.hyps.items()},
        }
        if opts.chunk_size > 0:
            record["chunks"] = len(list(chunk_windows(p.feats.shape[0], backend.geometry, opts.chunk_size)))
            record["subsampling_rate"] = backend.geometry.subsampling_rate
        if keep_log_probs:
            kept.append(rec.log_probs)
        if reference_log_probs is not None:
            record["max_log_prob_diff"] = max_abs_diff(reference_log_probs(index), rec.log_probs)
        if float_backend is not None:
            ref = stream_encode(float_backend, p.feats, opts.chunk_size, opts.num_left_chunks)
            record["cosine"] = {name: cosine_parts(a, b)
                                for name, a, b in zip(COSINE_TENSORS, ref, (rec.encoder_out, rec.log_probs))}
        records.append(record)
    return records, kept


@dataclass
class Decoded:
    """One backend's pass over a list of utterances in one context (records merged in order)."""

    hyps: List[Dict[str, str]]  # per utterance: mode -> text
    decode_seconds: float  # encoder + search, features excluded
    feature_seconds: float  # reading audio + fbank
    audio_seconds: float
    chunks: int = 0  # encoder chunks decoded (streaming)
    subsampling_rate: int = 0
    log_probs: Optional[List[np.ndarray]] = None  # per utterance (T', V), when kept (the reference)
    max_log_prob_diff: Optional[float] = None  # vs the reference's log-probs, when measured
    cosine: Dict[str, PooledCosine] = field(default_factory=dict)  # vs float graphs, when measured

    @property
    def rtf(self) -> float:
        """(feature extraction + decoding) / audio duration."""
        return round((self.feature_seconds + self.decode_seconds) / max(self.audio_seconds, 1e-9), 5)

    def chunk_latency(self, chunk_size: int) -> Dict[str, float]:
        """chunk_audio_ms: audio one chunk covers (the algorithmic latency: chunk x subsampling x 10 ms);
        chunk_compute_ms: decoding time per chunk at the measured thread count (encoder, CTC, search)."""
        return {"chunk_audio_ms": int(chunk_size * self.subsampling_rate * FRAME_SHIFT_MS),
                "chunk_compute_ms": round(1000.0 * self.decode_seconds / max(self.chunks, 1), 3)}


def merge(records: Sequence[dict], log_probs: Optional[List[np.ndarray]] = None) -> Decoded:
    """Records in utterance order -> one Decoded; sums are taken in that order, as one serial pass would."""
    decoded = Decoded([r["hyps"] for r in records], 0.0, 0.0, 0.0, log_probs=log_probs)
    for r in records:
        decoded.decode_seconds += r["decode_seconds"]
        decoded.feature_seconds += r.get("feature_seconds", 0.0)
        decoded.audio_seconds += r["seconds"]
        decoded.chunks += r.get("chunks", 0)
        decoded.subsampling_rate = r.get("subsampling_rate", decoded.subsampling_rate)
        if "max_log_prob_diff" in r:
            decoded.max_log_prob_diff = max(decoded.max_log_prob_diff or 0.0, r["max_log_prob_diff"])
        for name, parts in r.get("cosine", {}).items():
            decoded.cosine.setdefault(name, PooledCosine()).add_parts(parts)
    return decoded


def decode_utterances(backend: Backend, prepared: Sequence[PreparedUtterance], opts: DecodeOptions,
                      id_to_token: Mapping[int, str], desc: str, **kwargs) -> Decoded:
    """`decode_records` in this process, merged (keyword arguments as decode_records')."""
    records, kept = decode_records(backend, prepared, opts, id_to_token, desc, **kwargs)
    return merge(records, kept if kwargs.get("keep_log_probs") else None)


def reference_metrics(refs: Sequence[str], decoded: Mapping[str, Decoded],
                      contexts: Mapping[str, DecodeOptions]) -> Dict[str, object]:
    """A model's own scores in every context: the layout of metrics/torch.json."""
    first = next(iter(decoded.values()))
    result: Dict[str, object] = {"utterances": len(refs), "audio_seconds": round(first.audio_seconds, 2)}
    for context, opts in contexts.items():
        d = decoded[context]
        result[context] = {mode: score(zip(refs, (h[mode] for h in d.hyps))).as_dict() for mode in opts.modes}
        result[context]["rtf"] = d.rtf
        if opts.chunk_size > 0:
            result[context].update(d.chunk_latency(opts.chunk_size))
    return result


def evaluate_set(backend: Backend, prepared: List[PreparedUtterance], contexts: Mapping[str, DecodeOptions],
                 id_to_token: Mapping[int, str]) -> tuple:
    """A model's own scores in every context, in this process ->
    (metrics for this set, per-utterance hypotheses, {context: per-utterance (T', V) CTC log-probs})."""
    decoded = {c: decode_utterances(backend, prepared, o, id_to_token, c, keep_log_probs=True)
               for c, o in contexts.items()}
    hyps = [{"key": p.utt.key, "ref": p.utt.txt, **{c: d.hyps[i] for c, d in decoded.items()}}
            for i, p in enumerate(prepared)]
    metrics = reference_metrics([p.utt.txt for p in prepared], decoded, contexts)
    return metrics, hyps, {c: d.log_probs or [] for c, d in decoded.items()}
