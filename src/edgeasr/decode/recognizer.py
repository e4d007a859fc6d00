"""Decode one utterance's features with a backend: encoder (streaming or full), then each search mode."""

from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from .backend import Backend
from .search import ctc_greedy_search, ctc_prefix_beam_search
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


@dataclass
class Recognition:
    hyps: Dict[str, List[int]]  # mode -> token ids
    log_probs: np.ndarray  # (T', V) CTC log-probabilities the searches ran on
    encoder_out: np.ndarray  # (T', D) encoder frames (what attention rescoring attends to)


def recognize(backend: Backend, feats: np.ndarray, opts: DecodeOptions) -> Recognition:
    """(T, F) features -> token ids per decoding mode, and the CTC log-probs behind them."""
    for mode in opts.modes:
        if mode not in MODES:
            raise ValueError(f"unknown decoding mode {mode!r} (supported: {', '.join(MODES)})")
    if opts.chunk_size > 0:
        enc, log_probs = stream_encode(backend, feats, opts.chunk_size, opts.num_left_chunks)
    else:
        enc, log_probs = backend.encode(feats)
    if enc.shape[0] == 0:
        return Recognition({mode: [] for mode in opts.modes}, log_probs, enc)
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
            best, _ = backend.pick_rescored(enc, beam, opts.ctc_weight, opts.reverse_weight)
            result["attention_rescoring"] = list(best)
    return Recognition(result, log_probs, enc)
