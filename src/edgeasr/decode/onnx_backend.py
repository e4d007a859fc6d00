"""onnxruntime backends over the exported graphs, behind the same Backend interface as torch."""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from ..artifact.metadata import StreamGeometry, check_streamed_as_exported, read_metadata
from ..artifact.onnx_io import session
from ..model.mask import cache_slot_mask
from .backend import ScoringBackend
from .search import Hyp, sequence_scores


@dataclass
class OnnxStreamState:
    offset: int
    chunks_done: int
    att_cache: np.ndarray
    cnn_cache: np.ndarray


class OnnxCpuBackend(ScoringBackend):
    """cpu/encoder.onnx + ctc.onnx (+ decoder.onnx), driven the way WeNet's runtime drives them:
    fixed-size cache, att_mask opening one more chunk of cache per call. Offsets start at 0, so the
    result equals PyTorch's chunk-by-chunk decoding for every positional encoding."""

    def __init__(self, encoder: Path, ctc: Path, decoder: Optional[Path], threads: int = 1):
        meta = read_metadata(encoder, ("wenet_cpu", "wenet_ctc"))  # cpu/ or sherpa/
        stream = StreamGeometry.from_metadata(meta)
        self.geometry, self.chunk_size, self.num_left_chunks = stream.input, stream.chunk_size, stream.num_left_chunks
        self.sos, self.eos = int(meta["sos_symbol"]), int(meta["eos_symbol"])
        self.encoder = session(encoder, threads)
        self.encoder_inputs = [i.name for i in self.encoder.get_inputs()]
        self.ctc = session(ctc, threads)
        # A CTC-only model's decoder.onnx is the neutral one WeNet's runtime needs (export/cpu.py).
        self.decoder = session(decoder, threads) if decoder is not None and meta["decoder"] != "none" else None
        self.has_decoder = self.decoder is not None
        layers, heads = int(meta["num_blocks"]), int(meta["head"])
        d_k2 = 2 * int(meta["output_size"]) // heads
        self.cache_frames = self.chunk_size * self.num_left_chunks if self.num_left_chunks > 0 else 0
        self.att_cache_shape = (layers, heads, self.cache_frames, d_k2)
        self.cnn_cache_shape = (layers, 1, int(meta["output_size"]), int(meta["cnn_module_kernel"]) - 1)

    def encode(self, feats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        raise ValueError("cpu/encoder.onnx is a streaming model: decode it with chunk_size > 0")

    def start_stream(self, chunk_size: int, num_left_chunks: int) -> OnnxStreamState:
        check_streamed_as_exported("encoder.onnx", (self.chunk_size, self.num_left_chunks), (chunk_size, num_left_chunks))
        return OnnxStreamState(
            0, 0, np.zeros(self.att_cache_shape, np.float32), np.zeros(self.cnn_cache_shape, np.float32)
        )

    def _att_mask(self, chunks_done: int) -> np.ndarray:
        if self.num_left_chunks <= 0:
            return np.ones((0, 0, 0), dtype=bool)
        return cache_slot_mask(self.cache_frames, self.chunk_size, chunks_done)[None, None]

    def encode_chunk(self, window: np.ndarray, state: OnnxStreamState) -> Tuple[np.ndarray, np.ndarray, OnnxStreamState]:
        required = self.cache_frames if self.num_left_chunks > 0 else (-1 if self.num_left_chunks < 0 else 0)
        feed = {
            "chunk": window[None].astype(np.float32),
            "offset": np.array(state.offset, dtype=np.int64),
            "required_cache_size": np.array(required, dtype=np.int64),
            "att_cache": state.att_cache,
            "cnn_cache": state.cnn_cache,
            "att_mask": self._att_mask(state.chunks_done),
        }
        # As WeNet's runtime: feed by name what the graph declares (see export/cpu.py).
        out, att_cache, cnn_cache = self.encoder.run(None, {k: feed[k] for k in self.encoder_inputs})
        log_probs = self.ctc.run(None, {"hidden": out})[0][0]
        next_state = OnnxStreamState(state.offset + out.shape[1], state.chunks_done + 1, att_cache, cnn_cache)
        return out[0], log_probs, next_state

    def rescore(self, encoder_out: np.ndarray, hyps: Sequence[Hyp], reverse_weight: float
                ) -> Tuple[np.ndarray, np.ndarray]:
        """decoder.onnx computes both directions; reverse_weight only weighs them (ScoringBackend)."""
        length = max(len(h) for h in hyps) + 1
        pad = np.full((len(hyps), length), self.eos, dtype=np.int64)
        pad[:, 0] = self.sos
        for i, h in enumerate(hyps):
            pad[i, 1 : 1 + len(h)] = h
        lens = np.array([len(h) + 1 for h in hyps], dtype=np.int64)
        score, r_score = self.decoder.run(None, {"hyps": pad, "hyps_lens": lens, "encoder_out": encoder_out[None]})
        return sequence_scores(score, hyps, self.eos), sequence_scores(r_score, hyps, self.eos, reverse=True)


@dataclass
class GpuStreamState:
    offset: np.ndarray  # (1, 1) int64
    att_cache: np.ndarray  # (1, L, h, C, 2*d_k)
    cnn_cache: np.ndarray  # (1, L, D, K-1)
    cache_mask: np.ndarray  # (1, 1, C), 1 = filled


class OnnxGpuBackend:
    """gpu/ graphs at batch 1: offline/encoder.onnx (full context), streaming/encoder.onnx (a short
    last chunk is zero-padded and masked by chunk_lens; absent where the model cannot stream there)
    and decoder.onnx (picks best_index itself, with the rescoring weights it was exported with).

    The streaming graph returns WeNet's top-K CTC log-probs per frame; the other entries are -inf,
    which leaves greedy search and a prefix beam of width <= K unchanged."""

    def __init__(self, encoder: Optional[Path], encoder_streaming: Optional[Path], decoder: Optional[Path],
                 threads: int = 1):
        """encoder (offline) and encoder_streaming: either may be None (not exported, or not needed)."""
        if encoder is None and encoder_streaming is None:
            raise ValueError("OnnxGpuBackend needs an offline or a streaming encoder")
        meta = read_metadata(encoder if encoder is not None else encoder_streaming, ("wenet_gpu",))
        stream = StreamGeometry.from_metadata(meta)
        self.geometry, self.chunk_size, self.num_left_chunks = stream.input, stream.chunk_size, stream.num_left_chunks
        self.window = stream.decoding_window
        self.vocab_size = int(meta["vocab_size"])
        self.sos, self.eos = int(meta["sos_symbol"]), int(meta["eos_symbol"])
        self.weights = (float(meta["ctc_weight"]), float(meta["reverse_weight"]))
        self.encoder = session(encoder, threads) if encoder is not None else None
        self.streaming = session(encoder_streaming, threads) if encoder_streaming is not None else None
        self.streaming_inputs = [i.name for i in self.streaming.get_inputs()] if self.streaming else []
        self.streaming_outputs = [o.name for o in self.streaming.get_outputs()] if self.streaming else []
        self.decoder = session(decoder, threads) if decoder is not None else None
        self.decoder_inputs = [i.name for i in self.decoder.get_inputs()] if self.decoder else []
        self.has_decoder = self.decoder is not None
        layers, heads, d = int(meta["num_blocks"]), int(meta["head"]), int(meta["output_size"])
        self.cache_frames = self.chunk_size * self.num_left_chunks
        self.att_cache_shape = (1, layers, heads, self.cache_frames, 2 * d // heads)
        self.cnn_cache_shape = (1, layers, d, int(meta["cnn_module_kernel"]) - 1)

    def encode(self, feats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if self.encoder is None:
            raise ValueError("gpu/offline/encoder.onnx was not given: this backend streams only")
        out, lens, log_probs, _, _ = self.encoder.run(
            None, {"speech": feats[None].astype(np.float32), "speech_lengths": np.array([feats.shape[0]], np.int32)}
        )
        n = int(lens[0])
        return out[0, :n], log_probs[0, :n]

    def start_stream(self, chunk_size: int, num_left_chunks: int) -> GpuStreamState:
        if self.streaming is None:
            raise ValueError("gpu/streaming/ was not exported for this model (metrics/export.json says why)")
        check_streamed_as_exported("gpu/streaming/encoder.onnx", (self.chunk_size, self.num_left_chunks),
                                   (chunk_size, num_left_chunks))
        return GpuStreamState(
            np.zeros((1, 1), np.int64),
            np.zeros(self.att_cache_shape, np.float32),
            np.zeros(self.cnn_cache_shape, np.float32),
            np.zeros((1, 1, self.cache_frames), np.float32),
        )

    def encode_chunk(self, window: np.ndarray, state: GpuStreamState) -> Tuple[np.ndarray, np.ndarray, GpuStreamState]:
        padded = np.zeros((1, self.window, window.shape[1]), np.float32)
        padded[0, : window.shape[0]] = window
        feed = {
            "chunk_xs": padded,
            "chunk_lens": np.array([window.shape[0]], np.int32),
            "offset": state.offset,
            "att_cache": state.att_cache,
            "cnn_cache": state.cnn_cache,
            "cache_mask": state.cache_mask,
        }
        out = dict(zip(self.streaming_outputs,
                       self.streaming.run(None, {k: feed[k] for k in self.streaming_inputs})))
        n = int(out["chunk_out_lens"][0])
        log_probs = np.full((n, self.vocab_size), -np.inf, np.float32)
        np.put_along_axis(log_probs, out["log_probs_idx"][0, :n], out["log_probs"][0, :n], axis=1)
        next_state = GpuStreamState(out["r_offset"], out["r_att_cache"], out.get("r_cnn_cache", state.cnn_cache),
                                    out["r_cache_mask"])
        return out["chunk_out"][0, :n], log_probs, next_state

    def pick_rescored(
        self, encoder_out: np.ndarray, beam: Sequence[Tuple[Hyp, float]], ctc_weight: float, reverse_weight: float
    ) -> Tuple[Hyp, float]:
        """decoder.onnx returns only best_index, so the returned score is NaN."""
        if not np.allclose((ctc_weight, reverse_weight), self.weights):
            raise ValueError(f"gpu decoder.onnx rescores with ctc_weight, reverse_weight = {self.weights} "
                             f"(inside the graph), asked for {(ctc_weight, reverse_weight)}")
        length = max(len(h) for h, _ in beam) + 2  # sos + tokens + eos
        hyps = np.full((1, len(beam), length), self.eos, np.int64)
        r_hyps = hyps.copy()
        hyps[0, :, 0] = r_hyps[0, :, 0] = self.sos
        for i, (h, _) in enumerate(beam):
            hyps[0, i, 1 : 1 + len(h)] = h
            r_hyps[0, i, 1 : 1 + len(h)] = h[::-1]
        feeds = {
            "encoder_out": encoder_out[None].astype(np.float32),
            "encoder_out_lens": np.array([encoder_out.shape[0]], np.int32),
            "hyps_pad_sos_eos": hyps,
            "hyps_lens_sos": np.array([[len(h) + 1 for h, _ in beam]], np.int32),
            "r_hyps_pad_sos_eos": r_hyps,
            "ctc_score": np.array([[s for _, s in beam]], np.float32),
        }
        best = int(self.decoder.run(None, {k: feeds[k] for k in self.decoder_inputs})[0][0])
        return beam[best][0], float("nan")


class OnnxSherpaGraphBackend(OnnxCpuBackend):
    """sherpa/model.onnx (encoder + CTC in one graph, (1,)-shaped offsets) through our own driver,
    for export-time parity; `offset` fed as sherpa-onnx feeds it, from chunk * left (C) up."""

    def __init__(self, model: Path, threads: int = 1):
        super().__init__(model, model, None, threads)

    def encode_chunk(self, window: np.ndarray, state: OnnxStreamState) -> Tuple[np.ndarray, np.ndarray, OnnxStreamState]:
        log_probs, att_cache, cnn_cache = self.encoder.run(
            None,
            {
                "x": window[None].astype(np.float32),
                "offset": np.array([self.cache_frames + state.offset], dtype=np.int64),
                "required_cache_size": np.array([self.cache_frames], dtype=np.int64),
                "attn_cache": state.att_cache,
                "conv_cache": state.cnn_cache,
                "attn_mask": self._att_mask(state.chunks_done),
            },
        )
        n = log_probs.shape[1]
        # The graph has no encoder-frame output; CTC log-probs are what sherpa-onnx consumes.
        next_state = OnnxStreamState(state.offset + n, state.chunks_done + 1, att_cache, cnn_cache)
        return np.zeros((n, 0), np.float32), log_probs[0], next_state
