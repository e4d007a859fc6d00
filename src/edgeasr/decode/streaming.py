"""Chunk-by-chunk feature windows with WeNet's rules, for any backend.

window = (chunk - 1) * subsampling + right_context + 1 feature frames, stride = subsampling * chunk;
the last window may be shorter; trailing frames that cannot fill right_context + 1 are dropped.
"""

from typing import Iterator, Tuple

import numpy as np

from ..model.subsampling import Geometry, chunk_stride, decoding_window, min_input_frames
from .backend import Backend


def chunk_windows(num_frames: int, geometry: Geometry, chunk_size: int) -> Iterator[Tuple[int, int]]:
    """(start, end) feature-frame ranges, one per encoder chunk."""
    context = min_input_frames(geometry.right_context)
    stride = chunk_stride(chunk_size, geometry.subsampling_rate)
    window = decoding_window(chunk_size, geometry.subsampling_rate, geometry.right_context)
    for start in range(0, num_frames - context + 1, stride):
        yield start, min(start + window, num_frames)


def stream_encode(
    backend: Backend, feats: np.ndarray, chunk_size: int, num_left_chunks: int
) -> Tuple[np.ndarray, np.ndarray]:
    """(T, F) -> encoder frames (T', D) and CTC log-probs (T', V), chunk by chunk with caches carried over."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    state = backend.start_stream(chunk_size, num_left_chunks)
    frames, log_probs = [], []
    for start, end in chunk_windows(feats.shape[0], backend.geometry, chunk_size):
        out, lp, state = backend.encode_chunk(feats[start:end], state)
        frames.append(out)
        log_probs.append(lp)
    if not frames:
        return np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(frames, axis=0), np.concatenate(log_probs, axis=0)
