"""Export-time parity: every exported family against the PyTorch model it came from.

Streaming models run a whole utterance chunk by chunk with their caches fed back; batched models
run a batch of different lengths. A difference above the tolerance fails the export, naming the
worst tensor. INT8 copies are measured, not checked (quantization changes numbers by design).
"""

from typing import Dict, List, Optional, Sequence

import numpy as np

from ..decode import Backend, TorchBackend, stream_encode
from ..decode.search import ctc_prefix_beam_search
from ..errors import EdgeAsrError
from ..similarity import max_abs_diff

# float32 graphs of the same weights: differences come from kernel summation order only.
ENCODER_TOL = 1e-4  # max |diff| of encoder frames
LOG_PROB_TOL = 1e-3  # max |diff| of CTC log-probabilities over the finite entries


def worst_diffs(
    reference: Backend,
    candidate: Backend,
    utterances: Sequence[np.ndarray],
    chunk_size: int,
    num_left_chunks: int,
    tensors: Sequence[str] = ("encoder_out", "ctc_log_probs"),
) -> Dict[str, float]:
    """Max |diff| of encoder frames and/or CTC log-probs, streamed (chunk_size > 0) or full context."""
    worst = {name: 0.0 for name in tensors}
    for feats in utterances:
        if chunk_size > 0:
            ref = stream_encode(reference, feats, chunk_size, num_left_chunks)
            got = stream_encode(candidate, feats, chunk_size, num_left_chunks)
        else:
            ref, got = reference.encode(feats), candidate.encode(feats)
        for index, name in enumerate(("encoder_out", "ctc_log_probs")):
            if name in worst:
                worst[name] = max(worst[name], max_abs_diff(ref[index], got[index]))
    return worst


def rescoring_agreement(
    reference: TorchBackend, candidate: Backend, utterances: Sequence[np.ndarray], beam_size: int,
    ctc_weight: float, reverse_weight: float,
) -> float:
    """Share of utterances where both pick the same hypothesis from the same CTC n-best (beam_size)."""
    same = []
    for feats in utterances:
        enc, log_probs = reference.encode(feats)
        beam = ctc_prefix_beam_search(log_probs, beam_size)
        same.append(
            reference.pick_rescored(enc, beam, ctc_weight, reverse_weight)[0]
            == candidate.pick_rescored(enc, beam, ctc_weight, reverse_weight)[0]
        )
    return float(np.mean(same))


def check_within_tolerance(name: str, diffs: Dict[str, float], limits: Optional[Dict[str, float]] = None) -> None:
    """Raise naming the worst tensor of `name` if any difference exceeds its tolerance."""
    limits = limits or {"encoder_out": ENCODER_TOL, "ctc_log_probs": LOG_PROB_TOL}
    over: List[str] = [
        f"{tensor} max|diff| {value:.3g} > {limits[tensor]:g}" for tensor, value in diffs.items() if value > limits[tensor]
    ]
    if over:
        raise EdgeAsrError(f"{name}: ONNX differs from PyTorch ({'; '.join(over)})")
