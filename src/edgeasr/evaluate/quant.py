"""How far quantized graphs drift from their float originals over whole streamed utterances."""

from typing import Dict, Sequence

import numpy as np

from ..decode import Backend, DecodeOptions, stream_encode
from .runner import PreparedUtterance


def stream_cosine(float_backend: Backend, quant_backend: Backend, prepared: Sequence[PreparedUtterance],
                  opts: DecodeOptions) -> Dict[str, float]:
    """Cosine similarity, float vs quantized, of encoder frames and CTC log-probs, pooled over a set."""
    sums = {name: np.zeros(3) for name in ("encoder_out", "ctc_log_probs")}
    for p in prepared:
        ref = stream_encode(float_backend, p.feats, opts.chunk_size, opts.num_left_chunks)
        got = stream_encode(quant_backend, p.feats, opts.chunk_size, opts.num_left_chunks)
        for (name, acc), a, b in zip(sums.items(), ref, got):
            a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
            acc += (a @ b, a @ a, b @ b)
    return {f"cosine_{name}": round(float(acc[0] / max(np.sqrt(acc[1] * acc[2]), 1e-30)), 6)
            for name, acc in sums.items()}
