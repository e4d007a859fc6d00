"""A static fixed-cache streaming graph (rk3588/encoder.onnx, export.graphs.FixedCacheEncoder) driven
chunk by chunk, the way a board runtime drives it.

The host keeps the caches the graph returns, opens in `att_mask` the filled cache slots (the
rightmost ones, cache_slot_mask) and this chunk's real frames, and slices the keys' positions from
the sinusoid table; a last window shorter than W is zero-padded and the outputs of its padded frames
are dropped. Padded frames are invisible to the real ones (masked keys, a causal conv module), so
the result equals PyTorch's forward_chunk_by_chunk with the same left chunks frame for frame
(checked at export: rknn.export).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..artifact.metadata import StreamGeometry, check_streamed_as_exported, read_metadata
from ..artifact.onnx_io import graph_inputs, session
from ..model.embedding import sinusoid_table
from ..model.mask import cache_slot_mask
from ..model.subsampling import output_frames
from .bpu_backend import GraphSession, log_softmax
from .search import Hyp

MODEL_TYPE = "fixed_cache_stream"  # the metadata contract of a FixedCacheEncoder graph


@dataclass
class FixedCacheState:
    chunks_done: int
    att_cache: np.ndarray  # (L, h, C, 2*d_k)
    cnn_cache: Optional[np.ndarray]  # (L, 1, D, K-1); None without a causal conv module


class FixedCacheBackend:
    """Streaming-only backend over one fixed-cache graph; CTC searches only (no decoder on the NPU)."""

    has_decoder = False

    def __init__(self, encoder: Path, threads: int = 1, runner: Optional[GraphSession] = None):
        """runner: what runs the graph; None = onnxruntime on the CPU. Another runner (the RK3588
        simulator) runs the same graph compiled, fed exactly alike."""
        meta = read_metadata(encoder, (MODEL_TYPE,))
        stream = StreamGeometry.from_metadata(meta)
        self.geometry, self.chunk_size, self.num_left_chunks = stream.input, stream.chunk_size, stream.num_left_chunks
        self.window = stream.decoding_window
        self.encoder = runner or session(encoder, threads)
        self.shapes: Dict[str, Tuple[int, ...]] = {name: tuple(shape) for name, shape in graph_inputs(encoder)}
        self.input_names = list(self.shapes)
        self.cache_frames = self.shapes["att_cache"][2]
        self.positions = (sinusoid_table(int(meta["pos_max_len"]), int(meta["output_size"]))[0].numpy()
                          if "pos_emb" in self.shapes else None)

    def encode(self, feats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        raise ValueError("the fixed-cache graph is a streaming model: decode it with chunk_size > 0")

    def start_stream(self, chunk_size: int, num_left_chunks: int) -> FixedCacheState:
        check_streamed_as_exported("the fixed-cache encoder", (self.chunk_size, self.num_left_chunks),
                                   (chunk_size, num_left_chunks))
        cnn = np.zeros(self.shapes["cnn_cache"], np.float32) if "cnn_cache" in self.shapes else None
        return FixedCacheState(0, np.zeros(self.shapes["att_cache"], np.float32), cnn)

    def key_positions(self, chunks_done: int) -> np.ndarray:
        """(1, C + chunk, D): the encoding of positions offset - C .. offset + chunk - 1, clamped at 0
        (negative ones are unfilled cache slots, which the mask hides)."""
        offset = chunks_done * self.chunk_size
        index = np.clip(np.arange(offset - self.cache_frames, offset + self.chunk_size), 0, None)
        if index[-1] >= len(self.positions):
            raise ValueError(f"utterance longer than the {len(self.positions)} positions of the model's encoding")
        return self.positions[index][None]

    def inputs(self, window: np.ndarray, state: FixedCacheState) -> Tuple[Dict[str, np.ndarray], int]:
        """The graph's feeds for one window (W', F) with W' <= W, and the number of real output frames."""
        chunk = np.zeros((1, self.window, window.shape[1]), np.float32)
        chunk[0, : window.shape[0]] = window
        valid = min(self.chunk_size, output_frames(window.shape[0], self.geometry.subsampling_rate,
                                                   self.geometry.right_context))
        mask = cache_slot_mask(self.cache_frames, self.chunk_size, state.chunks_done, valid)
        feeds = {"chunk": chunk, "att_cache": state.att_cache,
                 "att_mask": np.ascontiguousarray(np.broadcast_to(mask.astype(np.float32), self.shapes["att_mask"]))}
        if state.cnn_cache is not None:
            feeds["cnn_cache"] = state.cnn_cache
        if self.positions is not None:
            feeds["pos_emb"] = self.key_positions(state.chunks_done)
        return {name: feeds[name] for name in self.input_names}, valid

    def step(self, window: np.ndarray, state: FixedCacheState
             ) -> Tuple[Dict[str, np.ndarray], Sequence[np.ndarray], int, FixedCacheState]:
        """One graph call: its feeds, its outputs (encoder_out, ctc_logits, caches), the number of real
        output frames, and the state the next chunk starts from."""
        feeds, valid = self.inputs(window, state)
        outputs = self.encoder.run(None, feeds)
        cnn = outputs[3] if state.cnn_cache is not None else None
        return feeds, outputs, valid, FixedCacheState(state.chunks_done + 1, outputs[2], cnn)

    def encode_chunk(self, window: np.ndarray, state: FixedCacheState
                     ) -> Tuple[np.ndarray, np.ndarray, FixedCacheState]:
        _, outputs, valid, next_state = self.step(window, state)
        return outputs[0][0, :valid], log_softmax(outputs[1][0, :valid]), next_state

    def pick_rescored(self, encoder_out: np.ndarray, beam: Sequence[Tuple[Hyp, float]], ctc_weight: float,
                      reverse_weight: float) -> Tuple[Hyp, float]:
        raise ValueError("the fixed-cache graph has no attention decoder: use CTC modes")
