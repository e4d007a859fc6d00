"""How far quantized graphs drift from their float originals over whole streamed utterances."""

from typing import Dict, Sequence

from ..decode import Backend, DecodeOptions, stream_encode
from ..frontend.dataset import PreparedUtterance
from ..similarity import PooledCosine


def stream_cosine(float_backend: Backend, quant_backend: Backend, prepared: Sequence[PreparedUtterance],
                  opts: DecodeOptions) -> Dict[str, float]:
    """Cosine similarity, float vs quantized, of encoder frames and CTC log-probs, pooled over a set."""
    pooled = {name: PooledCosine() for name in ("encoder_out", "ctc_log_probs")}
    for p in prepared:
        ref = stream_encode(float_backend, p.feats, opts.chunk_size, opts.num_left_chunks)
        got = stream_encode(quant_backend, p.feats, opts.chunk_size, opts.num_left_chunks)
        for acc, a, b in zip(pooled.values(), ref, got):
            acc.add(a, b)
    return {f"cosine_{name}": round(acc.value(), 6) for name, acc in pooled.items()}
