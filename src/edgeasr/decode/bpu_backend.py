"""The X3 graphs (bpu/encoder.onnx + ctc.onnx, float or quantized) driven like the board runtime.

WeNet's X3 runtime (runtime/horizonbpu/bpu/bpu_asr_model.cc) feeds each chunk as one fixed window:
the feature frames carried over from the previous window, then the new ones; the last window is
zero-padded to the full size; `att_mask` opens one more chunk of cache per call; the CTC graph
returns raw logits (log-softmax on the host). Two protocols:

- `exact`: the padded frames of the last window are masked in `att_mask` and their outputs are
  dropped, so the result equals PyTorch's chunk-by-chunk decoding frame for frame;
- `board`: what WeNet's runtime does today: padding left visible to attention and every frame of
  the last chunk decoded ("it hardly affects wer", bpu_asr_model.cc).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from ..artifact.metadata import StreamGeometry, check_streamed_as_exported, read_metadata
from ..artifact.onnx_io import graph_inputs, session
from ..model.mask import cache_slot_mask
from ..model.subsampling import output_frames
from .search import Hyp

PROTOCOLS = ("exact", "board")


class GraphSession(Protocol):
    """What runs one graph: onnxruntime's InferenceSession or anything with its run()."""

    def run(self, output_names: Optional[Sequence[str]], feeds: Dict[str, np.ndarray]) -> List[np.ndarray]: ...


@dataclass
class BpuStreamState:
    chunks_done: int
    att_cache: np.ndarray  # (1, L*h, 2*d_k, T)
    cnn_cache: np.ndarray  # (1, D, L, K-1); a one-frame placeholder without a conv module


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(T, V) -> log-probabilities over V, in float32."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))).astype(np.float32)


class OnnxBpuBackend:
    """Streaming-only backend over the X3 graphs; CTC searches only (the board has no decoder)."""

    has_decoder = False

    def __init__(self, encoder: Path, ctc: Path, protocol: str = "exact", threads: int = 1,
                 sessions: Optional[Tuple[GraphSession, GraphSession]] = None):
        """sessions: what runs the two graphs (encoder, ctc); None = onnxruntime on the CPU. Another
        runner (the RK3588 simulator) runs the same graphs compiled, fed exactly alike."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r}: use one of {PROTOCOLS}")
        stream = StreamGeometry.from_metadata(read_metadata(encoder, ("wenet_x3_bpu",)))
        self.geometry, self.chunk_size, self.num_left_chunks = stream.input, stream.chunk_size, stream.num_left_chunks
        self.window = stream.decoding_window
        self.protocol = protocol
        self.encoder, self.ctc = sessions or (session(encoder, threads), session(ctc, threads))
        self.shapes = {name: tuple(shape) for name, shape in graph_inputs(encoder)}
        self.heads = self.shapes["att_mask"][1]
        self.cache_frames = self.shapes["att_cache"][3]

    def encode(self, feats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        raise ValueError("the X3 encoder is a streaming model: decode it with chunk_size > 0")

    def start_stream(self, chunk_size: int, num_left_chunks: int) -> BpuStreamState:
        check_streamed_as_exported("the X3 encoder", (self.chunk_size, self.num_left_chunks), (chunk_size, num_left_chunks))
        return BpuStreamState(0, np.zeros(self.shapes["att_cache"], np.float32),
                              np.zeros(self.shapes["cnn_cache"], np.float32))

    def valid_frames(self, window_frames: int) -> int:
        """Output frames a window of `window_frames` real feature frames produces (WeNet's rule)."""
        return min(self.chunk_size, output_frames(window_frames, self.geometry.subsampling_rate,
                                                  self.geometry.right_context))

    def att_mask(self, chunks_done: int, valid: int) -> np.ndarray:
        """(1, h, chunk, T + chunk) float: the filled cache slots (rightmost) and this chunk's real frames."""
        slots = cache_slot_mask(self.cache_frames, self.chunk_size, chunks_done, valid).astype(np.float32)
        return np.ascontiguousarray(np.broadcast_to(slots, (1, self.heads, self.chunk_size, slots.size)))

    def inputs(self, window: np.ndarray, state: BpuStreamState) -> Tuple[dict, int]:
        """The encoder feeds for one window (W', F) with W' <= W, and the number of real output frames."""
        chunk = np.zeros((1, 1, self.window, window.shape[1]), np.float32)
        chunk[0, 0, : window.shape[0]] = window
        valid = self.valid_frames(window.shape[0])
        feeds = {
            "chunk": chunk,
            "att_cache": state.att_cache,
            "cnn_cache": state.cnn_cache,
            "att_mask": self.att_mask(state.chunks_done, valid if self.protocol == "exact" else self.chunk_size),
        }
        return feeds, valid

    def step(self, window: np.ndarray, state: BpuStreamState) -> Tuple[dict, np.ndarray, int, BpuStreamState]:
        """One encoder call on a window (W', F): its feeds, the hidden output (1, D, 1, chunk), the
        number of real output frames, and the state the next chunk starts from."""
        feeds, valid = self.inputs(window, state)
        outputs = self.encoder.run(None, feeds)
        return feeds, outputs[0], valid, BpuStreamState(state.chunks_done + 1, outputs[1], outputs[2])

    def encode_chunk(self, window: np.ndarray, state: BpuStreamState) -> Tuple[np.ndarray, np.ndarray, BpuStreamState]:
        _, hidden, valid, next_state = self.step(window, state)
        logits = self.ctc.run(None, {"hidden": hidden})[0][0, :, 0, :].T  # (chunk, V)
        keep = valid if self.protocol == "exact" else self.chunk_size
        return hidden[0, :, 0, :keep].T, log_softmax(logits[:keep]), next_state

    def pick_rescored(self, encoder_out: np.ndarray, beam: Sequence[Tuple[Hyp, float]], ctc_weight: float,
                      reverse_weight: float) -> Tuple[Hyp, float]:
        raise ValueError("the X3 graphs have no attention decoder: use CTC modes")
