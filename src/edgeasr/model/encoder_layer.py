"""Transformer and Conformer encoder blocks (pre- or post-norm, WeNet's residual order)."""

from typing import Optional, Tuple

import torch

from .convolution import ConvolutionModule

_EMPTY_MASK = torch.ones((0, 0, 0), dtype=torch.bool)
_EMPTY_ATT_CACHE = torch.zeros((0, 0, 0, 0))
_EMPTY_CNN_CACHE = torch.zeros((0, 0, 0))


class TransformerEncoderLayer(torch.nn.Module):
    """x + MHA(norm1 x), then x + FFN(norm2 x) (normalize_before) or the post-norm order."""

    def __init__(
        self,
        size: int,
        self_attn: torch.nn.Module,
        feed_forward: torch.nn.Module,
        dropout_rate: float,
        normalize_before: bool = True,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.norm1 = torch.nn.LayerNorm(size, eps=norm_eps)
        self.norm2 = torch.nn.LayerNorm(size, eps=norm_eps)
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.size = size
        self.normalize_before = normalize_before

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        pos_emb: torch.Tensor,
        mask_pad: torch.Tensor = _EMPTY_MASK,
        att_cache: torch.Tensor = _EMPTY_ATT_CACHE,
        cnn_cache: torch.Tensor = _EMPTY_CNN_CACHE,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, D) -> x, mask, att_cache (1, h, T_cache+T, 2d_k), empty cnn_cache."""
        residual = x
        if self.normalize_before:
            x = self.norm1(x)
        x_att, new_att_cache = self.self_attn(x, x, x, mask, pos_emb, att_cache)
        x = residual + self.dropout(x_att)
        if not self.normalize_before:
            x = self.norm1(x)
        residual = x
        if self.normalize_before:
            x = self.norm2(x)
        x = residual + self.dropout(self.feed_forward(x))
        if not self.normalize_before:
            x = self.norm2(x)
        return x, mask, new_att_cache, torch.zeros((0, 0, 0), dtype=x.dtype, device=x.device)


class ConformerEncoderLayer(torch.nn.Module):
    """[½FFN] -> MHA -> [conv] -> FFN(·½ if macaron) -> [norm_final], each with a residual."""

    def __init__(
        self,
        size: int,
        self_attn: torch.nn.Module,
        feed_forward: torch.nn.Module,
        feed_forward_macaron: Optional[torch.nn.Module],
        conv_module: Optional[ConvolutionModule],
        dropout_rate: float,
        normalize_before: bool = True,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.feed_forward_macaron = feed_forward_macaron
        self.conv_module = conv_module
        self.norm_ff = torch.nn.LayerNorm(size, eps=norm_eps)
        self.norm_mha = torch.nn.LayerNorm(size, eps=norm_eps)
        if feed_forward_macaron is not None:
            self.norm_ff_macaron = torch.nn.LayerNorm(size, eps=norm_eps)
            self.ff_scale = 0.5
        else:
            self.ff_scale = 1.0
        if conv_module is not None:
            self.norm_conv = torch.nn.LayerNorm(size, eps=norm_eps)
            self.norm_final = torch.nn.LayerNorm(size, eps=norm_eps)
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.size = size
        self.normalize_before = normalize_before

    def _residual(self, x: torch.Tensor, norm: torch.nn.Module, fn, scale: float = 1.0) -> torch.Tensor:
        residual = x
        if self.normalize_before:
            x = norm(x)
        x = residual + scale * self.dropout(fn(x))
        if not self.normalize_before:
            x = norm(x)
        return x

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        pos_emb: torch.Tensor,
        mask_pad: torch.Tensor = _EMPTY_MASK,
        att_cache: torch.Tensor = _EMPTY_ATT_CACHE,
        cnn_cache: torch.Tensor = _EMPTY_CNN_CACHE,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, D) -> x, mask, att_cache (1, h, T_cache+T, 2d_k), cnn_cache (B, D, K-1)."""
        if self.feed_forward_macaron is not None:
            x = self._residual(x, self.norm_ff_macaron, self.feed_forward_macaron, self.ff_scale)

        residual = x
        if self.normalize_before:
            x = self.norm_mha(x)
        x_att, new_att_cache = self.self_attn(x, x, x, mask, pos_emb, att_cache)
        x = residual + self.dropout(x_att)
        if not self.normalize_before:
            x = self.norm_mha(x)

        new_cnn_cache = torch.zeros((0, 0, 0), dtype=x.dtype, device=x.device)
        if self.conv_module is not None:
            residual = x
            if self.normalize_before:
                x = self.norm_conv(x)
            x, new_cnn_cache = self.conv_module(x, mask_pad, cnn_cache)
            x = residual + self.dropout(x)
            if not self.normalize_before:
                x = self.norm_conv(x)

        x = self._residual(x, self.norm_ff, self.feed_forward, self.ff_scale)
        if self.conv_module is not None:
            x = self.norm_final(x)
        return x, mask, new_att_cache, new_cnn_cache
