"""Conformer convolution module with WeNet's streaming cache.

The cache holds the last K-1 frames of the module's *input* (before pointwise_conv1), so a causal
depthwise conv over [cache, chunk] equals the full-utterance conv: cnn_cache is (1, D, K-1).
"""

from typing import Optional, Tuple

import torch

_EMPTY_MASK = torch.ones((0, 0, 0), dtype=torch.bool)
_EMPTY_CACHE = torch.zeros((0, 0, 0))


class ConvolutionModule(torch.nn.Module):
    """pointwise(2D) -> GLU -> depthwise(K) -> norm -> act -> pointwise(D)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        activation: torch.nn.Module,
        norm: str = "batch_norm",
        causal: bool = False,
        bias: bool = True,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.pointwise_conv1 = torch.nn.Conv1d(channels, 2 * channels, 1, bias=bias)
        if causal:
            padding, self.lorder = 0, kernel_size - 1
        else:
            assert (kernel_size - 1) % 2 == 0, "a non-causal conv module needs an odd kernel"
            padding, self.lorder = (kernel_size - 1) // 2, 0
        self.depthwise_conv = torch.nn.Conv1d(
            channels, channels, kernel_size, padding=padding, groups=channels, bias=bias
        )
        self.use_layer_norm = norm == "layer_norm"
        self.norm = (
            torch.nn.LayerNorm(channels, eps=norm_eps) if self.use_layer_norm else torch.nn.BatchNorm1d(channels)
        )
        self.pointwise_conv2 = torch.nn.Conv1d(channels, channels, 1, bias=bias)
        self.activation = activation
        # WeNet zeroes padded frames at the module's input and output only: pointwise_conv1's bias makes
        # them non-zero again before the depthwise conv, which a non-causal kernel reads. A fixed-shape
        # export turns this on so that a zero-padded last chunk equals a shorter one (export.graphs).
        self.mask_depthwise_input = False

    def forward(
        self, x: torch.Tensor, mask_pad: torch.Tensor = _EMPTY_MASK, cache: torch.Tensor = _EMPTY_CACHE
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, D), mask_pad (B, 1, T), cache (B, D, K-1) -> (B, T, D), new cache (B, D, K-1)."""
        x = x.transpose(1, 2)
        if mask_pad.size(2) > 0:
            x = x.masked_fill(~mask_pad, 0.0)
        if self.lorder > 0:
            if cache.size(2) == 0:
                x = torch.nn.functional.pad(x, (self.lorder, 0), "constant", 0.0)
            else:
                x = torch.cat((cache, x), dim=2)
            new_cache = x[:, :, -self.lorder :]
        else:
            new_cache = torch.zeros((0, 0, 0), dtype=x.dtype, device=x.device)
        x = torch.nn.functional.glu(self.pointwise_conv1(x), dim=1)
        if self.mask_depthwise_input and mask_pad.size(2) > 0:
            x = x.masked_fill(~mask_pad, 0.0)
        x = self.depthwise_conv(x)
        if self.use_layer_norm:
            x = self.activation(self.norm(x.transpose(1, 2))).transpose(1, 2)
        else:
            x = self.activation(self.norm(x))
        x = self.pointwise_conv2(x)
        if mask_pad.size(2) > 0:
            x = x.masked_fill(~mask_pad, 0.0)
        return x.transpose(1, 2), new_cache


def streaming_caveat(model: torch.nn.Module) -> Optional[str]:
    """A warning for a model whose conv modules are not causal, or None: streamed, each chunk's
    depthwise conv reads zero padding past the chunk's right edge where full-context training read
    the next frames, so streaming costs more accuracy than the attention context alone explains
    (docs/training.md measures how much)."""
    modules = [m for m in model.modules() if isinstance(m, ConvolutionModule) and m.lorder == 0]
    if not modules:
        return None
    kernel = modules[0].depthwise_conv.kernel_size[0]
    return (f"the conv module is not causal (kernel {kernel}, {len(modules)} blocks): streamed, each chunk's conv "
            f"sees zeros past the chunk edge that it never saw in training; expect streaming CER well above full "
            f"context (docs/training.md)")
