"""Attention decoders for rescoring: `transformer` (left-to-right) and `bitransformer` (plus right-to-left).

    decoder(memory (B, T, D), memory_mask (B, 1, T), ys_in_pad (B, L), ys_in_lens (B,),
            r_ys_in_pad (B, L), reverse_weight) -> logits (B, L, V), r_logits (B, L, V) or 0, olens
"""

from typing import Tuple

import torch

from .attention import MultiHeadedAttention
from .embedding import PositionalEncoding
from .encoder import ACTIVATIONS
from .ffn import PositionwiseFeedForward
from .mask import make_pad_mask, subsequent_mask


class DecoderLayer(torch.nn.Module):
    """Self-attention, source attention over the encoder output, FFN; each with a residual."""

    def __init__(
        self,
        size: int,
        self_attn: torch.nn.Module,
        src_attn: torch.nn.Module,
        feed_forward: torch.nn.Module,
        dropout_rate: float,
        normalize_before: bool = True,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.size = size
        self.self_attn = self_attn
        self.src_attn = src_attn
        self.feed_forward = feed_forward
        self.norm1 = torch.nn.LayerNorm(size, eps=norm_eps)
        self.norm2 = torch.nn.LayerNorm(size, eps=norm_eps)
        self.norm3 = torch.nn.LayerNorm(size, eps=norm_eps)
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.normalize_before = normalize_before

    def forward(
        self, tgt: torch.Tensor, tgt_mask: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """tgt (B, L, D), tgt_mask (B, L, L), memory (B, T, D), memory_mask (B, 1, T)."""
        residual = tgt
        x = self.norm1(tgt) if self.normalize_before else tgt
        x = residual + self.dropout(self.self_attn(x, x, x, tgt_mask)[0])
        if not self.normalize_before:
            x = self.norm1(x)
        residual = x
        if self.normalize_before:
            x = self.norm2(x)
        x = residual + self.dropout(self.src_attn(x, memory, memory, memory_mask)[0])
        if not self.normalize_before:
            x = self.norm2(x)
        residual = x
        if self.normalize_before:
            x = self.norm3(x)
        x = residual + self.dropout(self.feed_forward(x))
        if not self.normalize_before:
            x = self.norm3(x)
        return x, tgt_mask, memory, memory_mask


class TransformerDecoder(torch.nn.Module):
    """Token embedding + sinusoid, `num_blocks` decoder layers, final norm, output projection."""

    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        self_attention_dropout_rate: float = 0.0,
        src_attention_dropout_rate: float = 0.0,
        normalize_before: bool = True,
        activation_type: str = "relu",
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        d = encoder_output_size
        self.embed = torch.nn.Sequential(
            torch.nn.Embedding(vocab_size, d), PositionalEncoding(d, positional_dropout_rate)
        )
        self.normalize_before = normalize_before
        self.after_norm = torch.nn.LayerNorm(d, eps=norm_eps)
        self.output_layer = torch.nn.Linear(d, vocab_size)
        activation = ACTIVATIONS[activation_type]()
        self.decoders = torch.nn.ModuleList(
            DecoderLayer(
                d,
                MultiHeadedAttention(attention_heads, d, self_attention_dropout_rate),
                MultiHeadedAttention(attention_heads, d, src_attention_dropout_rate),
                PositionwiseFeedForward(d, linear_units, dropout_rate, activation),
                dropout_rate,
                normalize_before,
                norm_eps,
            )
            for _ in range(num_blocks)
        )

    def forward(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
        r_ys_in_pad: torch.Tensor = torch.empty(0),
        reverse_weight: float = 0.0,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> logits (B, L, V), 0.0 (no right-to-left pass), olens (B, L)."""
        maxlen = ys_in_pad.size(1)
        tgt_mask = ~make_pad_mask(ys_in_lens, maxlen).unsqueeze(1)
        tgt_mask = tgt_mask & subsequent_mask(maxlen, tgt_mask.device).unsqueeze(0)
        x, _ = self.embed(ys_in_pad)
        for layer in self.decoders:
            x, tgt_mask, memory, memory_mask = layer(x, tgt_mask, memory, memory_mask)
        if self.normalize_before:
            x = self.after_norm(x)
        return self.output_layer(x), torch.tensor(0.0), tgt_mask.sum(1)


class BiTransformerDecoder(torch.nn.Module):
    """`left_decoder` reads hypotheses left to right, `right_decoder` (r_num_blocks) right to left."""

    def __init__(self, vocab_size: int, encoder_output_size: int, r_num_blocks: int = 0, **conf):
        super().__init__()
        self.left_decoder = TransformerDecoder(vocab_size, encoder_output_size, **conf)
        conf = dict(conf, num_blocks=r_num_blocks)
        self.right_decoder = TransformerDecoder(vocab_size, encoder_output_size, **conf)

    def forward(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
        r_ys_in_pad: torch.Tensor = torch.empty(0),
        reverse_weight: float = 0.0,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> left logits (B, L, V), right logits (B, L, V) (0.0 when reverse_weight == 0), olens."""
        l_x, _, olens = self.left_decoder(memory, memory_mask, ys_in_pad, ys_in_lens)
        r_x = torch.tensor(0.0)
        if reverse_weight > 0.0:
            r_x, _, olens = self.right_decoder(memory, memory_mask, r_ys_in_pad, ys_in_lens)
        return l_x, r_x, olens
