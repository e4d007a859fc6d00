"""The X3 encoder and CTC graphs, built from an edgeasr model without modifying it.

Encoder, one chunk (static float32 NCHW, batch 1):
    chunk     (1, 1, W, F)             W = (chunk - 1) * subsampling + right_context + 1
    att_cache (1, L*h, 2*d_k, T)       T = chunk * num_left_chunks; layer i = channels [i*h, (i+1)*h)
    cnn_cache (1, D, L, K-1)           K-1 = 1 without a conv module: a placeholder carried through
    att_mask  (1, h, chunk, T + chunk) 1 = visible key
 -> output (1, D, 1, chunk), r_att_cache, r_cnn_cache (shapes as the inputs)
CTC: hidden (1, D, 1, chunk) -> logits (1, V, 1, chunk) (log-softmax is left to the host).
"""

from typing import List, Optional, Tuple

import torch

from ..model.asr_model import ASRModel
from ..model.encoder_layer import ConformerEncoderLayer, TransformerEncoderLayer
from ..model.mask import cache_slot_mask
from ..model.subsampling import decoding_window
from .contract import check_contract
from .layers import (
    Attention4d,
    ConvModule4d,
    LayerNorm4d,
    Pointwise,
    Subsampling4d,
    check_parity,
    feed_forward_4d,
    from_4d,
    residual,
)


class EncoderLayer4d(torch.nn.Module):
    """One conformer or transformer block on (1, D, 1, c); the same residual order as the original."""

    def __init__(self, layer: torch.nn.Module, chunk_size: int, cache_frames: int, layer_norm_on_bpu: bool):
        super().__init__()
        self.normalize_before = layer.normalize_before
        self.self_attn = Attention4d(layer.self_attn, chunk_size, cache_frames)
        self.is_conformer = isinstance(layer, ConformerEncoderLayer)
        if self.is_conformer:
            scale = layer.ff_scale
            self.feed_forward = feed_forward_4d(layer.feed_forward, scale)
            self.norm_ff = LayerNorm4d(layer.norm_ff, layer_norm_on_bpu)
            self.norm_mha = LayerNorm4d(layer.norm_mha, layer_norm_on_bpu)
            self.feed_forward_macaron = None
            if layer.feed_forward_macaron is not None:
                self.feed_forward_macaron = feed_forward_4d(layer.feed_forward_macaron, scale)
                self.norm_ff_macaron = LayerNorm4d(layer.norm_ff_macaron, layer_norm_on_bpu)
            self.conv_module = None
            if layer.conv_module is not None:
                self.conv_module = ConvModule4d(layer.conv_module, layer_norm_on_bpu)
                self.norm_conv = LayerNorm4d(layer.norm_conv, layer_norm_on_bpu)
                self.norm_final = LayerNorm4d(layer.norm_final, layer_norm_on_bpu)
        else:
            assert isinstance(layer, TransformerEncoderLayer)
            self.feed_forward = feed_forward_4d(layer.feed_forward, 1.0)
            self.norm_mha = LayerNorm4d(layer.norm1, layer_norm_on_bpu)
            self.norm_ff = LayerNorm4d(layer.norm2, layer_norm_on_bpu)
            self.conv_module = None

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, att_cache: torch.Tensor, cnn_cache: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        if self.is_conformer and self.feed_forward_macaron is not None:
            x = residual(x, self.norm_ff_macaron, self.feed_forward_macaron, self.normalize_before)
        new_att_cache: List[torch.Tensor] = []

        def attend(y: torch.Tensor) -> torch.Tensor:
            out, cache = self.self_attn(y, att_cache, mask)
            new_att_cache.append(cache)
            return out

        x = residual(x, self.norm_mha, attend, self.normalize_before)
        new_cnn_cache = None
        if self.conv_module is not None:
            new_cnn: List[torch.Tensor] = []

            def convolve(y: torch.Tensor) -> torch.Tensor:
                out, cache = self.conv_module(y, cnn_cache)
                new_cnn.append(cache)
                return out

            x = residual(x, self.norm_conv, convolve, self.normalize_before)
            new_cnn_cache = new_cnn[0]
        x = residual(x, self.norm_ff, self.feed_forward, self.normalize_before)
        if self.conv_module is not None:
            x = self.norm_final(x)
        return x, new_att_cache[0], new_cnn_cache


class BpuEncoder(torch.nn.Module):
    """WeNet's forward_chunk at a fixed chunk and cache size, with X3 I/O (see the module docstring)."""

    def __init__(self, model: ASRModel, chunk_size: int, num_left_chunks: int, layer_norm_on_bpu: bool = False):
        super().__init__()
        enc = model.encoder
        self.chunk_size, self.num_left_chunks = chunk_size, num_left_chunks
        self.cache_frames = chunk_size * num_left_chunks
        self.heads = enc.attention_heads
        self.d_k = enc.output_size() // self.heads
        self.output_size = enc.output_size()
        self.num_layers = len(enc.encoders)
        self.window = decoding_window(chunk_size, enc.embed.subsampling_rate, enc.embed.right_context)
        self.feature_dim = enc.input_size
        self.embed = Subsampling4d(enc.embed, enc.global_cmvn, enc.input_size)
        self.encoders = torch.nn.ModuleList(
            EncoderLayer4d(layer, chunk_size, self.cache_frames, layer_norm_on_bpu) for layer in enc.encoders
        )
        conv = getattr(enc.encoders[0], "conv_module", None)
        self.has_conv_module = conv is not None
        # NOTE: WeNet's board runtime (bpu_asr_model.cc) indexes encoder inputs 0-3 as chunk,
        # att_cache, cnn_cache, att_mask and outputs 1-2 as the caches it copies back. A model without
        # a conv module gets a one-frame placeholder cnn_cache carried to r_cnn_cache unchanged.
        self.conv_cache_frames = conv.lorder if conv is not None else 1
        self.normalize_before = enc.normalize_before
        self.after_norm = LayerNorm4d(enc.after_norm, layer_norm_on_bpu)

    def input_shapes(self) -> dict:
        """name -> static shape, in the graph's input order (the board runtime's order)."""
        return {
            "chunk": (1, 1, self.window, self.feature_dim),
            "att_cache": (1, self.num_layers * self.heads, 2 * self.d_k, self.cache_frames),
            "cnn_cache": (1, self.output_size, self.num_layers, self.conv_cache_frames),
            "att_mask": (1, self.heads, self.chunk_size, self.cache_frames + self.chunk_size),
        }

    def output_names(self) -> List[str]:
        return ["output", "r_att_cache", "r_cnn_cache"]

    def forward(self, chunk: torch.Tensor, att_cache: torch.Tensor, cnn_cache: torch.Tensor,
                att_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """chunk, att_cache, cnn_cache, att_mask -> output, r_att_cache, r_cnn_cache."""
        x = self.embed(chunk.transpose(2, 3))  # (1, D, 1, chunk)
        att_caches = torch.split(att_cache, self.heads, dim=1)
        cnn_caches = torch.split(cnn_cache, 1, dim=2) if self.has_conv_module else [None] * self.num_layers
        r_att, r_cnn = [], []
        for layer, a_cache, c_cache in zip(self.encoders, att_caches, cnn_caches):
            x, new_att, new_cnn = layer(x, att_mask, a_cache, c_cache)
            r_att.append(new_att[:, :, :, self.chunk_size :])  # keep the last T frames
            r_cnn.append(new_cnn)
        if self.normalize_before:
            x = self.after_norm(x)
        # The placeholder goes through an exact x1 (a BPU elementwise op): an input wired straight
        # to an output would be a graph without a node for the toolchain to place.
        r_cnn_cache = torch.cat(r_cnn, dim=2) if self.has_conv_module else cnn_cache * 1.0
        return x, torch.cat(r_att, dim=1), r_cnn_cache


class BpuCtc(torch.nn.Module):
    """hidden (1, D, 1, chunk) -> logits (1, V, 1, chunk); the vocabulary split at 2048 channels."""

    def __init__(self, model: ASRModel):
        super().__init__()
        self.ctc_lo = Pointwise.of(model.ctc.ctc_lo)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.ctc_lo(hidden)


def zero_state(encoder: BpuEncoder) -> dict:
    """The inputs of a stream's first chunk, features zero: empty caches, only the chunk visible."""
    inputs = {name: torch.zeros(shape) for name, shape in encoder.input_shapes().items()}
    inputs["att_mask"][..., encoder.cache_frames :] = 1.0
    return inputs


@torch.no_grad()
def check_encoder_parity(model: ASRModel, encoder: BpuEncoder, chunks: int = 3) -> float:
    """Stream random chunks through the original forward_chunk (fixed cache + mask) and the rewrite."""
    g = torch.Generator().manual_seed(1)
    enc = model.encoder
    inputs = zero_state(encoder)
    att_cache = torch.zeros(encoder.num_layers, encoder.heads, encoder.cache_frames, 2 * encoder.d_k)
    lorder = encoder.conv_cache_frames if encoder.has_conv_module else 0
    cnn_cache = torch.zeros(encoder.num_layers, 1, encoder.output_size, lorder)
    worst = 0.0
    for index in range(chunks):
        feats = torch.randn(1, encoder.window, encoder.feature_dim, generator=g) * 3 + 4
        mask = torch.from_numpy(cache_slot_mask(encoder.cache_frames, encoder.chunk_size, index))[None, None]
        ref, att_cache, cnn_cache = enc.forward_chunk(feats, index * encoder.chunk_size, encoder.cache_frames,
                                                      att_cache, cnn_cache, mask)
        inputs["chunk"] = feats.unsqueeze(0)
        inputs["att_mask"] = mask.unsqueeze(1).repeat(1, encoder.heads, encoder.chunk_size, 1).float()
        outputs = encoder(*inputs.values())
        worst = max(worst, check_parity("encoder chunk", ref, from_4d(outputs[0])))
        inputs["att_cache"], inputs["cnn_cache"] = outputs[1], outputs[2]
    return worst


def rewrite(model: ASRModel, chunk_size: int, num_left_chunks: int, layer_norm_on_bpu: bool = False) -> Tuple[BpuEncoder, BpuCtc]:
    """Contract check, then the 4-D encoder and CTC; each module and a 3-chunk stream checked."""
    check_contract(model, chunk_size, num_left_chunks)
    encoder = BpuEncoder(model, chunk_size, num_left_chunks, layer_norm_on_bpu).eval()
    check_encoder_parity(model, encoder)
    return encoder, BpuCtc(model).eval()
