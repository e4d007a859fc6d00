"""Padding and chunk masks, with WeNet's semantics (True = may attend / valid)."""

from typing import Optional

import numpy as np
import torch


def cache_slot_mask(cache_frames: int, chunk_size: int, chunks_done: int, valid: Optional[int] = None) -> np.ndarray:
    """(cache_frames + chunk_size,) bool: the positions a streaming chunk attends to under a fixed-size
    cache (WeNet's runtime layout, oldest slot first): the filled cache slots, which are the rightmost
    min(chunks_done * chunk_size, cache_frames), then the chunk's first `valid` frames (default all)."""
    mask = np.zeros(cache_frames + chunk_size, dtype=bool)
    filled = min(chunks_done * chunk_size, cache_frames)
    mask[cache_frames - filled : cache_frames + (chunk_size if valid is None else valid)] = True
    return mask


def make_pad_mask(lengths: torch.Tensor, max_len: int = 0) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool, True on padded frames."""
    max_len = max_len if max_len > 0 else int(lengths.max().item())
    steps = torch.arange(max_len, dtype=torch.int64, device=lengths.device)
    return steps.unsqueeze(0) >= lengths.unsqueeze(1)


def subsequent_mask(size: int, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """(L, L) lower-triangular bool mask for autoregressive decoding (no tril: opset 11 has none)."""
    pos = torch.arange(size, device=device)
    return pos.unsqueeze(0) <= pos.unsqueeze(1)


def subsequent_chunk_mask(
    size: int, chunk_size: int, num_left_chunks: int = -1, device: torch.device = torch.device("cpu")
) -> torch.Tensor:
    """(L, L) bool: frame i sees its own chunk, every earlier chunk or only `num_left_chunks` of them.

    Row i allows columns [start, end) with end = (i // chunk + 1) * chunk and
    start = max((i // chunk - num_left_chunks) * chunk, 0) (0 when num_left_chunks < 0).
    """
    pos = torch.arange(size, device=device)
    chunk_idx = torch.div(pos, chunk_size, rounding_mode="floor")
    end = torch.clamp((chunk_idx + 1) * chunk_size, max=size)
    if num_left_chunks < 0:
        start = torch.zeros_like(end)
    else:
        start = torch.clamp((chunk_idx - num_left_chunks) * chunk_size, min=0)
    cols = pos.unsqueeze(0)
    return (cols >= start.unsqueeze(1)) & (cols < end.unsqueeze(1))


def add_optional_chunk_mask(
    xs: torch.Tensor,
    masks: torch.Tensor,
    use_dynamic_chunk: bool,
    use_dynamic_left_chunk: bool,
    decoding_chunk_size: int,
    static_chunk_size: int,
    num_decoding_left_chunks: int,
    enable_full_context: bool = True,
) -> torch.Tensor:
    """Self-attention mask (B, L, L) from the padding mask (B, 1, L), as WeNet builds it.

    decoding_chunk_size < 0: full context; > 0: that chunk with `num_decoding_left_chunks`;
    0 with a dynamic-chunk model: a random chunk (training behaviour, kept for fidelity).
    """
    if use_dynamic_chunk:
        max_len = xs.size(1)
        if decoding_chunk_size < 0:
            chunk_size, num_left_chunks = max_len, -1
        elif decoding_chunk_size > 0:
            chunk_size, num_left_chunks = decoding_chunk_size, num_decoding_left_chunks
        else:
            # Training: either full context or a chunk in [1, 25], as WeNet samples it.
            chunk_size = int(torch.randint(1, max_len, (1,)).item())
            num_left_chunks = -1
            if chunk_size > max_len // 2 and enable_full_context:
                chunk_size = max_len
            else:
                chunk_size = chunk_size % 25 + 1
                if use_dynamic_left_chunk:
                    max_left_chunks = (max_len - 1) // chunk_size
                    num_left_chunks = int(torch.randint(0, max_left_chunks, (1,)).item())
        chunk_masks = masks & subsequent_chunk_mask(xs.size(1), chunk_size, num_left_chunks, xs.device).unsqueeze(0)
    elif static_chunk_size > 0:
        chunk_masks = masks & subsequent_chunk_mask(
            xs.size(1), static_chunk_size, num_decoding_left_chunks, xs.device
        ).unsqueeze(0)
    else:
        chunk_masks = masks
    # A padded row that sees nothing would give NaN in softmax; WeNet opens it (it is masked later).
    # Written as a tensor op, not a Python branch, so traced exports keep it.
    dead_rows = chunk_masks.sum(dim=-1, keepdim=True) == 0
    return chunk_masks | dead_rows
