"""The decoding contexts a params section asks for: streaming at the deployed chunk, and full context."""

from typing import Any, Dict, Sequence

from ..decode import DecodeOptions
from ..params import check_streaming


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
