"""Transformer and Conformer encoders with WeNet's full-utterance and chunk-streaming interfaces.

    encoder(xs, xs_lens, decoding_chunk_size, num_decoding_left_chunks) -> (B, T', D), (B, 1, T')
    encoder.forward_chunk(xs, offset, required_cache_size, att_cache, cnn_cache, att_mask)
        xs (1, window, F); att_cache (L, h, T_cache, 2*d_k); cnn_cache (L, 1, D, K-1)
        -> (1, chunk, D), r_att_cache (L, h, T_keep, 2*d_k), r_cnn_cache (L, 1, D, K-1)
    encoder.forward_chunk_by_chunk(xs, decoding_chunk_size, num_decoding_left_chunks)

Chunk-by-chunk output equals the full forward with the equivalent chunk mask (tests/test_streaming).
"""

from typing import Optional, Tuple

import torch

from .attention import ATTENTION_CLASSES
from .convolution import ConvolutionModule
from .embedding import POS_ENC_CLASSES
from .encoder_layer import ConformerEncoderLayer, TransformerEncoderLayer
from .ffn import MoEFFNLayer, PositionwiseFeedForward
from .mask import add_optional_chunk_mask, make_pad_mask
from .subsampling import SUBSAMPLING_CLASSES, chunk_stride, min_input_frames
from .subsampling import decoding_window as window_frames

ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "swish": torch.nn.SiLU,
    "gelu": torch.nn.GELU,
    "tanh": torch.nn.Tanh,
    "hardtanh": torch.nn.Hardtanh,
    "selu": torch.nn.SELU,
}


class GlobalCMVN(torch.nn.Module):
    """(x - mean) * istd over the feature axis; mean/istd (F,) are state_dict buffers."""

    def __init__(self, mean: torch.Tensor, istd: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("istd", istd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.istd


def make_ffn(
    size: int,
    linear_units: int,
    dropout_rate: float,
    activation: torch.nn.Module,
    mlp_type: str,
    mlp_bias: bool,
    n_expert: int,
    n_expert_activated: int,
) -> torch.nn.Module:
    if mlp_type == "moe":
        return MoEFFNLayer(size, linear_units, dropout_rate, activation, mlp_bias, n_expert, n_expert_activated)
    return PositionwiseFeedForward(size, linear_units, dropout_rate, activation, mlp_bias)


class BaseEncoder(torch.nn.Module):
    """Subsampling + positional encoding + a stack of blocks + final LayerNorm (normalize_before)."""

    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        input_layer: str = "conv2d",
        pos_enc_layer_type: str = "abs_pos",
        normalize_before: bool = True,
        static_chunk_size: int = 0,
        use_dynamic_chunk: bool = False,
        global_cmvn: Optional[GlobalCMVN] = None,
        use_dynamic_left_chunk: bool = False,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.input_size = input_size
        self._output_size = output_size
        # Block hyper-parameters, read by the subclasses that build the blocks.
        self.attention_heads = attention_heads
        self.linear_units = linear_units
        self.num_blocks = num_blocks
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.norm_eps = norm_eps
        self.global_cmvn = global_cmvn
        pos_enc = POS_ENC_CLASSES[pos_enc_layer_type](output_size, positional_dropout_rate)
        self.embed = SUBSAMPLING_CLASSES[input_layer](input_size, output_size, dropout_rate, pos_enc)
        self.normalize_before = normalize_before
        self.after_norm = torch.nn.LayerNorm(output_size, eps=norm_eps)
        self.static_chunk_size = static_chunk_size
        self.use_dynamic_chunk = use_dynamic_chunk
        self.use_dynamic_left_chunk = use_dynamic_left_chunk
        self.encoders = torch.nn.ModuleList()

    def output_size(self) -> int:
        return self._output_size

    def make_attention(self, kind: str, query_bias: bool, key_bias: bool, value_bias: bool) -> torch.nn.Module:
        return ATTENTION_CLASSES[kind](
            self.attention_heads,
            self._output_size,
            self.attention_dropout_rate,
            query_bias=query_bias,
            key_bias=key_bias,
            value_bias=value_bias,
        )

    def forward(
        self,
        xs: torch.Tensor,
        xs_lens: torch.Tensor,
        decoding_chunk_size: int = 0,
        num_decoding_left_chunks: int = -1,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """xs (B, T, F), xs_lens (B,) -> encoder out (B, T', D), valid mask (B, 1, T')."""
        masks = ~make_pad_mask(xs_lens, xs.size(1)).unsqueeze(1)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        xs, pos_emb, masks = self.embed(xs, masks)
        mask_pad = masks
        chunk_masks = add_optional_chunk_mask(
            xs,
            masks,
            self.use_dynamic_chunk,
            self.use_dynamic_left_chunk,
            decoding_chunk_size,
            self.static_chunk_size,
            num_decoding_left_chunks,
        )
        for layer in self.encoders:
            xs, chunk_masks, _, _ = layer(xs, chunk_masks, pos_emb, mask_pad)
        if self.normalize_before:
            xs = self.after_norm(xs)
        return xs, masks

    def forward_chunk(
        self,
        xs: torch.Tensor,
        offset: int,
        required_cache_size: int,
        att_cache: torch.Tensor = torch.zeros(0, 0, 0, 0),
        cnn_cache: torch.Tensor = torch.zeros(0, 0, 0, 0),
        att_mask: torch.Tensor = torch.ones((0, 0, 0), dtype=torch.bool),
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One chunk. `offset` = output frames already produced; required_cache_size < 0 keeps all,
        0 keeps nothing beyond this call, > 0 keeps that many frames of attention cache.
        att_mask (1, 1, T_cache + chunk) masks unfilled cache slots of a fixed-size cache (ONNX)."""
        assert xs.size(0) == 1, "forward_chunk takes batch 1"
        tmp_masks = torch.ones(1, 1, xs.size(1), device=xs.device, dtype=torch.bool)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        xs, _, _ = self.embed(xs, tmp_masks, offset)
        elayers, cache_t1 = att_cache.size(0), att_cache.size(2)
        chunk_size = xs.size(1)
        attention_key_size = cache_t1 + chunk_size
        # Keys are the cached frames then this chunk: positions start at offset - cache_t1.
        pos_emb = self.embed.position_encoding(offset - cache_t1, attention_key_size)
        if required_cache_size < 0:
            next_cache_start = 0
        elif required_cache_size == 0:
            next_cache_start = attention_key_size
        else:
            next_cache_start = max(attention_key_size - required_cache_size, 0)
        r_att_cache, r_cnn_cache = [], []
        for i, layer in enumerate(self.encoders):
            xs, _, new_att_cache, new_cnn_cache = layer(
                xs,
                att_mask,
                pos_emb,
                att_cache=att_cache[i : i + 1] if elayers > 0 else att_cache,
                cnn_cache=cnn_cache[i] if cnn_cache.size(0) > 0 else cnn_cache,
            )
            r_att_cache.append(new_att_cache[:, :, next_cache_start:, :])
            r_cnn_cache.append(new_cnn_cache.unsqueeze(0))
        if self.normalize_before:
            xs = self.after_norm(xs)
        return xs, torch.cat(r_att_cache, dim=0), torch.cat(r_cnn_cache, dim=0)

    def forward_chunk_by_chunk(
        self, xs: torch.Tensor, decoding_chunk_size: int, num_decoding_left_chunks: int = -1
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """xs (1, T, F) -> (1, T', D), mask (1, 1, T'); WeNet's simulate-streaming loop.

        window = (chunk - 1) * subsampling + right_context + 1, stride = subsampling * chunk;
        trailing frames that cannot fill `right_context + 1` produce nothing, as in WeNet."""
        assert decoding_chunk_size > 0, "decoding_chunk_size must be > 0"
        assert self.static_chunk_size > 0 or self.use_dynamic_chunk, "model was not trained for streaming"
        subsampling = self.embed.subsampling_rate
        context = min_input_frames(self.embed.right_context)
        stride = chunk_stride(decoding_chunk_size, subsampling)
        decoding_window = window_frames(decoding_chunk_size, subsampling, self.embed.right_context)
        num_frames = xs.size(1)
        att_cache = torch.zeros((0, 0, 0, 0), device=xs.device)
        cnn_cache = torch.zeros((0, 0, 0, 0), device=xs.device)
        outputs = []
        offset = 0
        required_cache_size = decoding_chunk_size * num_decoding_left_chunks
        for cur in range(0, num_frames - context + 1, stride):
            end = min(cur + decoding_window, num_frames)
            y, att_cache, cnn_cache = self.forward_chunk(
                xs[:, cur:end, :], offset, required_cache_size, att_cache, cnn_cache
            )
            outputs.append(y)
            offset += y.size(1)
        ys = torch.cat(outputs, 1)
        return ys, torch.ones((1, 1, ys.size(1)), device=ys.device, dtype=torch.bool)


class TransformerEncoder(BaseEncoder):
    """Self-attention + FFN blocks."""

    def __init__(
        self,
        input_size: int,
        selfattention_layer_type: str = "selfattn",
        activation_type: str = "relu",
        mlp_type: str = "position_wise_feed_forward",
        mlp_bias: bool = True,
        n_expert: int = 8,
        n_expert_activated: int = 2,
        query_bias: bool = True,
        key_bias: bool = True,
        value_bias: bool = True,
        **base,
    ):
        super().__init__(input_size, **base)
        d = self._output_size
        activation = ACTIVATIONS[activation_type]()
        self.encoders = torch.nn.ModuleList(
            TransformerEncoderLayer(
                d,
                self.make_attention(selfattention_layer_type, query_bias, key_bias, value_bias),
                make_ffn(
                    d, self.linear_units, self.dropout_rate, activation, mlp_type, mlp_bias, n_expert, n_expert_activated
                ),
                self.dropout_rate,
                self.normalize_before,
                self.norm_eps,
            )
            for _ in range(self.num_blocks)
        )


class ConformerEncoder(BaseEncoder):
    """Macaron FFN + self-attention + convolution module blocks."""

    def __init__(
        self,
        input_size: int,
        selfattention_layer_type: str = "rel_selfattn",
        activation_type: str = "swish",
        macaron_style: bool = True,
        use_cnn_module: bool = True,
        cnn_module_kernel: int = 15,
        causal: bool = False,
        cnn_module_norm: str = "batch_norm",
        conv_bias: bool = True,
        conv_norm_eps: float = 1e-5,
        mlp_type: str = "position_wise_feed_forward",
        mlp_bias: bool = True,
        n_expert: int = 8,
        n_expert_activated: int = 2,
        query_bias: bool = True,
        key_bias: bool = True,
        value_bias: bool = True,
        pos_enc_layer_type: str = "rel_pos",
        **base,
    ):
        super().__init__(input_size, pos_enc_layer_type=pos_enc_layer_type, **base)
        d = self._output_size
        activation = ACTIVATIONS[activation_type]()

        def ffn() -> torch.nn.Module:
            return make_ffn(
                d, self.linear_units, self.dropout_rate, activation, mlp_type, mlp_bias, n_expert, n_expert_activated
            )

        self.encoders = torch.nn.ModuleList(
            ConformerEncoderLayer(
                d,
                self.make_attention(selfattention_layer_type, query_bias, key_bias, value_bias),
                ffn(),
                ffn() if macaron_style else None,
                ConvolutionModule(d, cnn_module_kernel, activation, cnn_module_norm, causal, conv_bias, conv_norm_eps)
                if use_cnn_module
                else None,
                self.dropout_rate,
                self.normalize_before,
                self.norm_eps,
            )
            for _ in range(self.num_blocks)
        )
