"""Decode one utterance's features with a backend: encoder (streaming or full), then each search mode."""

from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from .backend import Backend
from .search import attention_rescoring, ctc_greedy_search, ctc_prefix_beam_search
from .streaming import stream_encode

MODES = ("ctc_greedy", "ctc_prefix_beam", "attention_rescoring")


@dataclass(frozen=True)
class DecodeOptions:
    chunk_size: int  # > 0: streaming with this chunk; <= 0: full context
    num_left_chunks: int  # -1: unlimited history
    beam_size: int = 10
    ctc_weight: float = 0.5
    reverse_weight: float = 0.0
    modes: Sequence[str] = MODES


def recognize(backend: Backend, feats: np.ndarray, opts: DecodeOptions) -> Dict[str, List[int]]:
    """(T, F) features -> {mode: token ids}."""
    for mode in opts.modes:
        if mode not in MODES:
            raise ValueError(f"unknown decoding mode {mode!r} (supported: {', '.join(MODES)})")
    if opts.chunk_size > 0:
        enc = stream_encode(backend, feats, opts.chunk_size, opts.num_left_chunks)
    else:
        enc = backend.encode(feats)
    if enc.shape[0] == 0:
        return {mode: [] for mode in opts.modes}
    log_probs = backend.ctc_log_probs(enc)
    result: Dict[str, List[int]] = {}
    if "ctc_greedy" in opts.modes:
        result["ctc_greedy"] = ctc_greedy_search(log_probs)
    if "ctc_prefix_beam" in opts.modes or "attention_rescoring" in opts.modes:
        beam = ctc_prefix_beam_search(log_probs, opts.beam_size)
        if "ctc_prefix_beam" in opts.modes:
            result["ctc_prefix_beam"] = list(beam[0][0])
        if "attention_rescoring" in opts.modes:
            if not backend.has_decoder:
                raise ValueError("attention_rescoring needs a model with an attention decoder")
            hyps = [h for h, _ in beam]
            scores, r_scores = backend.rescore(enc, hyps)
            best, _ = attention_rescoring(beam, scores, r_scores, opts.ctc_weight, opts.reverse_weight)
            result["attention_rescoring"] = list(best)
    return result
