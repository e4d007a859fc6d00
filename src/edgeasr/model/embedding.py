"""Positional encodings with WeNet's numerics.

Offset conventions (what streaming relies on):
- `forward(x, offset)` scales x and returns the encoding of absolute positions
  [offset, offset + T) for the queries of this chunk.
- `position_encoding(offset, size)` returns positions [offset, offset + size). The encoder calls it
  with offset = chunk_offset - cache_frames so that the keys (cache + chunk) get their absolute
  positions. WeNet's "rel_pos" is therefore an absolute sinusoid applied to keys in the attention
  score (q . W_pos p_j) without rel_shift: equal in full-utterance and chunk-by-chunk mode as long
  as the cache holds exactly the frames before the chunk.
- The table is a plain attribute, computed, never loaded. Current WeNet saves it as a persistent
  buffer (`*.pe` keys); `load_model` accepts those only when they equal this table.
- Exported streaming graphs keep a fixed-size cache; their first chunks see cache slots at
  negative positions, which are masked, so a tensor offset gathers with a clamp at 0.
"""

import math
from typing import Tuple, Union

import torch

Offset = Union[int, torch.Tensor]


def sinusoid_table(max_len: int, d_model: int) -> torch.Tensor:
    """(1, max_len, d_model) float32: sin on even, cos on odd channels."""
    pe = torch.zeros(max_len, d_model)
    position = torch.arange(0, max_len, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.unsqueeze(0)


class PositionalEncoding(torch.nn.Module):
    """abs_pos: x * sqrt(d) + pe[offset:offset+T]."""

    def __init__(self, d_model: int, dropout_rate: float, max_len: int = 5000):
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = torch.nn.Dropout(p=dropout_rate)
        self.max_len = max_len
        self.pe = sinusoid_table(max_len, d_model)

    def position_encoding(self, offset: Offset, size: int, apply_dropout: bool = True) -> torch.Tensor:
        """(1, size, d) encoding of positions [offset, offset + size)."""
        if isinstance(offset, int):
            assert 0 <= offset and offset + size <= self.max_len, f"positions {offset}..{offset + size} out of range"
            pos_emb = self.pe[:, offset : offset + size]
        else:
            # A tensor offset (exported graphs) stays a graph input through a gather. Positions
            # below 0 belong to cache slots not filled yet, which the attention mask hides: clamp.
            # A (B, 1) offset gives one row per stream (batched streaming export).
            index = torch.clamp(offset.reshape(-1, 1) + torch.arange(size, device=offset.device), min=0)
            pos_emb = torch.nn.functional.embedding(index, self.pe[0])
        return self.dropout(pos_emb) if apply_dropout else pos_emb

    def forward(self, x: torch.Tensor, offset: Offset = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, d) -> (x * sqrt(d) + pe, pe), pe (1, T, d)."""
        self.pe = self.pe.to(x.device)
        pos_emb = self.position_encoding(offset, x.size(1), False)
        return self.dropout(self.with_positions(x, pos_emb)), self.dropout(pos_emb)

    def with_positions(self, x: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        """x (B, T, d) and the encoding of its own positions (1, T, d) -> the embedded frames."""
        return x * self.xscale + pos_emb


class RelPositionalEncoding(PositionalEncoding):
    """rel_pos: x * sqrt(d); the encoding is returned separately for the attention's bd term."""

    def forward(self, x: torch.Tensor, offset: Offset = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        self.pe = self.pe.to(x.device)
        pos_emb = self.position_encoding(offset, x.size(1), False)
        return self.dropout(self.with_positions(x, pos_emb)), self.dropout(pos_emb)

    def with_positions(self, x: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        return x * self.xscale  # the encoding enters the attention (its bd term), not the frames


class NoPositionalEncoding(torch.nn.Module):
    """no_pos: x unchanged (no sqrt(d) scale), zero encoding."""

    def __init__(self, d_model: int, dropout_rate: float):
        super().__init__()
        self.d_model = d_model
        self.dropout = torch.nn.Dropout(p=dropout_rate)

    def forward(self, x: torch.Tensor, offset: Offset = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        pos_emb = torch.zeros(1, x.size(1), self.d_model, device=x.device, dtype=x.dtype)
        return self.dropout(x), pos_emb

    def with_positions(self, x: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        return x

    def position_encoding(self, offset: Offset, size: int, apply_dropout: bool = True) -> torch.Tensor:
        return torch.zeros(1, size, self.d_model)

POS_ENC_CLASSES = {
    "abs_pos": PositionalEncoding,
    "rel_pos": RelPositionalEncoding,
    "no_pos": NoPositionalEncoding,
}
