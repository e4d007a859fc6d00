"""Conv2d front-end subsampling (WeNet's conv2d / conv2d6 / conv2d8).

Each maps features (B, T, F) to (B, T', D) with T' = T subsampled by `subsampling_rate`; one output
frame needs `right_context + 1` input frames. Key names (`conv.0`, `conv.2`, `out.0` / `linear`)
follow WeNet's state_dict.
"""

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from .embedding import Offset


@dataclass(frozen=True)
class Geometry:
    """What a streaming driver needs to know about the encoder's input."""

    subsampling_rate: int
    right_context: int
    feature_dim: int


def min_input_frames(right_context: int) -> int:
    """Feature frames one output frame needs (15 at conv2d8: 0.16 s)."""
    return right_context + 1


def decoding_window(chunk_size: int, subsampling_rate: int, right_context: int) -> int:
    """Feature frames of one streaming chunk: (chunk - 1) * subsampling + right_context + 1, WeNet's
    decoding_window, the one formula every backend, export, the X3 graph and calibration use."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    return (chunk_size - 1) * subsampling_rate + min_input_frames(right_context)


def output_frames(input_frames: int, subsampling_rate: int, right_context: int) -> int:
    """Output frames the front end makes from `input_frames` feature frames (0 when too few): the
    inverse of decoding_window."""
    return max(0, (input_frames - min_input_frames(right_context)) // subsampling_rate + 1)


def chunk_stride(chunk_size: int, subsampling_rate: int) -> int:
    """Feature frames between the starts of two chunks."""
    return subsampling_rate * chunk_size


class Conv2dSubsampling(torch.nn.Module):
    """Stacked stride-s 3x3/5x5 Conv2d + ReLU, then a Linear over (channels x freq)."""

    subsampling_rate: int
    right_context: int
    kernels: List[Tuple[int, int]]  # (kernel, stride) per conv layer

    def __init__(self, idim: int, odim: int, dropout_rate: float, pos_enc: torch.nn.Module):
        super().__init__()
        layers: List[torch.nn.Module] = []
        freq = idim
        in_ch = 1
        for kernel, stride in self.kernels:
            layers += [torch.nn.Conv2d(in_ch, odim, kernel, stride), torch.nn.ReLU()]
            in_ch = odim
            freq = (freq - kernel) // stride + 1
        self.conv = torch.nn.Sequential(*layers)
        self._make_projection(odim * freq, odim)
        self.pos_enc = pos_enc

    def _make_projection(self, in_features: int, odim: int) -> None:
        self.linear = torch.nn.Linear(in_features, odim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def projection_layer(self) -> torch.nn.Linear:
        """The Linear that maps the flattened conv output (C x F') to the model dimension."""
        return self.linear

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, offset: Offset = 0, positions: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, F), x_mask (B, 1, T) -> (B, T', D), pos_emb (1, T', D), mask (B, 1, T').

        positions (1, T', D): the encoding of the output frames' own positions, given instead of
        computed from `offset` (a fixed-shape export feeds them from the host)."""
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.size()
        x = self.project(x.transpose(1, 2).contiguous().view(b, t, c * f))
        if positions is None:
            x, pos_emb = self.pos_enc(x, offset)
        else:
            x, pos_emb = self.pos_enc.with_positions(x, positions), positions
        return x, pos_emb, self.subsample_mask(x_mask)

    def subsample_mask(self, x_mask: torch.Tensor) -> torch.Tensor:
        for kernel, stride in self.kernels:
            x_mask = x_mask[:, :, kernel - 1 :: stride]
        return x_mask

    def position_encoding(self, offset: Offset, size: int) -> torch.Tensor:
        return self.pos_enc.position_encoding(offset, size, False)


class Conv2dSubsampling4(Conv2dSubsampling):
    """conv2d: two 3x3 stride-2 convs; projection is `out.0` in WeNet's keys."""

    subsampling_rate, right_context = 4, 6
    kernels = [(3, 2), (3, 2)]

    def _make_projection(self, in_features: int, odim: int) -> None:
        self.out = torch.nn.Sequential(torch.nn.Linear(in_features, odim))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x)

    def projection_layer(self) -> torch.nn.Linear:
        return self.out[0]


class Conv2dSubsampling6(Conv2dSubsampling):
    """conv2d6: 3x3 stride 2, then 5x5 stride 3."""

    subsampling_rate, right_context = 6, 10
    kernels = [(3, 2), (5, 3)]


class Conv2dSubsampling8(Conv2dSubsampling):
    """conv2d8: three 3x3 stride-2 convs."""

    subsampling_rate, right_context = 8, 14
    kernels = [(3, 2), (3, 2), (3, 2)]


SUBSAMPLING_CLASSES = {
    "conv2d": Conv2dSubsampling4,
    "conv2d6": Conv2dSubsampling6,
    "conv2d8": Conv2dSubsampling8,
}
