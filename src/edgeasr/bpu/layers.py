"""4-D rewrites of the encoder's building blocks for the X3 BPU: data flows as (1, C, 1, T).

Every rewrite copies the weights it needs (the source model is never modified) and is compared
with the module it replaces when it is built (`check_parity`): a difference above PARITY_TOL,
relative to the largest output value, is an error naming the module.
"""

import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..errors import EdgeAsrError
from ..model.attention import MultiHeadedAttention, RelPositionMultiHeadedAttention
from ..model.convolution import ConvolutionModule
from ..model.ffn import MoEFFNLayer, PositionwiseFeedForward
from ..model.subsampling import Conv2dSubsampling, decoding_window
from .contract import MAX_CHANNELS, MAX_KERNEL

PARITY_TOL = 1e-5  # max |diff| / max(1, max |reference|): float32 summation order only


def to_4d(x: torch.Tensor) -> torch.Tensor:
    """(1, T, C) -> (1, C, 1, T)."""
    return x.transpose(1, 2).unsqueeze(2)


def from_4d(x: torch.Tensor) -> torch.Tensor:
    """(1, C, 1, T) -> (1, T, C)."""
    return x.squeeze(2).transpose(1, 2)


def check_parity(name: str, reference: torch.Tensor, rewritten: torch.Tensor) -> float:
    """Relative max |diff|; raises when above PARITY_TOL."""
    if reference.shape != rewritten.shape:
        raise EdgeAsrError(f"{name}: 4-D rewrite has shape {tuple(rewritten.shape)}, expected {tuple(reference.shape)}")
    diff = float((reference - rewritten).abs().max()) / max(1.0, float(reference.abs().max()))
    if not diff <= PARITY_TOL:
        raise EdgeAsrError(f"{name}: 4-D rewrite differs from the original by {diff:.3g} (> {PARITY_TOL:g})")
    return diff


def _sizes(total: int, limit: int) -> List[int]:
    """Split `total` into parts of at most `limit`."""
    return [min(limit, total - start) for start in range(0, total, limit)]


def chunks_of(x: torch.Tensor, sizes: Sequence[int], dim: int) -> Tuple[torch.Tensor, ...]:
    """torch.split that stays a tuple for a single part (keeps the graph free of a no-op Split)."""
    return torch.split(x, list(sizes), dim=dim) if len(sizes) > 1 else (x,)


def _random(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


class Pointwise(torch.nn.Module):
    """A Linear (or kernel-1 Conv1d) as 1x1 Conv2d: (1, I, 1, T) -> (1, O, 1, T).

    X3 convs take at most 2048 channels per group, so wider layers become a grid of convs: input
    slices are summed, output slices concatenated (the FFN of a large model, the CTC vocabulary)."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], extra_bias: Optional[torch.Tensor] = None):
        super().__init__()
        weight = weight.detach().reshape(weight.size(0), weight.size(1))
        out_dim, in_dim = weight.shape
        if extra_bias is not None:
            bias = extra_bias if bias is None else bias.detach() + extra_bias
        self.in_sizes = _sizes(in_dim, MAX_CHANNELS)
        self.out_sizes = _sizes(out_dim, MAX_CHANNELS)
        self.convs = torch.nn.ModuleList()
        o0 = 0
        for o in self.out_sizes:
            i0 = 0
            for j, i in enumerate(self.in_sizes):
                conv = torch.nn.Conv2d(i, o, 1, bias=bias is not None and j == 0)
                conv.weight = torch.nn.Parameter(weight[o0 : o0 + o, i0 : i0 + i].clone()[:, :, None, None])
                if conv.bias is not None:
                    conv.bias = torch.nn.Parameter(bias.detach()[o0 : o0 + o].clone())
                self.convs.append(conv)
                i0 += i
            o0 += o

    @classmethod
    def of(cls, layer: torch.nn.Module, extra_bias: Optional[torch.Tensor] = None) -> "Pointwise":
        """From a torch.nn.Linear or a kernel-1 torch.nn.Conv1d."""
        rewritten = cls(layer.weight, layer.bias, extra_bias)
        x = _random(1, 5, layer.weight.size(1))
        with torch.no_grad():
            ref = layer(x) if isinstance(layer, torch.nn.Linear) else layer(x.transpose(1, 2)).transpose(1, 2)
            if extra_bias is not None:
                ref = ref + extra_bias
            check_parity(f"pointwise {tuple(layer.weight.shape)}", ref, from_4d(rewritten(to_4d(x))))
        return rewritten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.convs) == 1:
            return self.convs[0](x)
        parts = chunks_of(x, self.in_sizes, dim=1)
        outs = []
        for o in range(len(self.out_sizes)):
            convs = self.convs[o * len(self.in_sizes) : (o + 1) * len(self.in_sizes)]
            y = convs[0](parts[0])
            for conv, part in zip(convs[1:], parts[1:]):
                y = y + conv(part)
            outs.append(y)
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]


class LayerNorm4d(torch.nn.Module):
    """LayerNorm over channels of (1, C, 1, T).

    layer_norm_on_bpu=False (default): transposed to (1, 1, T, C) and normalized there; these nodes
    run on the CPU. layer_norm_on_bpu=True: decomposed into BPU ops, means as 1x1 convs with weights 1/C (C -> C, so no
    broadcast is needed), x * x instead of Pow (a typical X3 CPU fallback)."""

    def __init__(self, norm: torch.nn.LayerNorm, layer_norm_on_bpu: bool):
        super().__init__()
        channels = norm.normalized_shape[0]
        self.layer_norm_on_bpu = layer_norm_on_bpu
        self.eps = norm.eps
        self.norm = torch.nn.LayerNorm(channels, eps=norm.eps)
        self.norm.load_state_dict(norm.state_dict())
        if layer_norm_on_bpu:
            self.mean = torch.nn.Conv2d(channels, channels, 1, bias=False)
            self.mean.weight = torch.nn.Parameter(torch.full((channels, channels, 1, 1), 1.0 / channels))
            self.var = torch.nn.Conv2d(channels, channels, 1, bias=False)
            self.var.weight = torch.nn.Parameter(torch.full((channels, channels, 1, 1), 1.0 / channels))
            self.register_buffer("weight", norm.weight.detach().clone().reshape(1, channels, 1, 1))
            self.register_buffer("bias", norm.bias.detach().clone().reshape(1, channels, 1, 1))
        x = _random(1, 5, channels) * 3.0
        with torch.no_grad():
            check_parity("layer norm", norm(x), from_4d(self(to_4d(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.layer_norm_on_bpu:
            return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        centered = x - self.mean(x)
        variance = self.var(centered * centered)
        return centered / torch.sqrt(variance + self.eps) * self.weight + self.bias


class Subsampling4d(torch.nn.Module):
    """CMVN + conv2d/conv2d6/conv2d8 subsampling on (1, 1, F, W) -> (1, D, 1, T').

    Features enter as (1, 1, F, W) (frequency as height), so the conv weights are transposed in
    their last two axes. The Linear over (channels x F') becomes F' / 7 convs with (k, 1) kernels,
    k <= 7 (the X3 kernel limit), whose outputs are summed."""

    def __init__(self, embed: Conv2dSubsampling, cmvn: Optional[torch.nn.Module], feature_dim: int):
        super().__init__()
        if cmvn is not None:
            self.register_buffer("cmvn_mean", cmvn.mean.detach().clone().reshape(1, 1, -1, 1))
            self.register_buffer("cmvn_istd", cmvn.istd.detach().clone().reshape(1, 1, -1, 1))
        self.has_cmvn = cmvn is not None
        layers: List[torch.nn.Module] = []
        for module in embed.conv:
            if isinstance(module, torch.nn.Conv2d):
                conv = torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size[::-1],
                                       module.stride[::-1])
                conv.weight = torch.nn.Parameter(module.weight.detach().transpose(2, 3).clone())
                conv.bias = torch.nn.Parameter(module.bias.detach().clone())
                layers.append(conv)
            else:
                layers.append(type(module)())
        self.conv = torch.nn.Sequential(*layers)
        linear = embed.out[0] if hasattr(embed, "out") else embed.linear
        odim = linear.weight.size(0)
        channels = self.conv[-2].out_channels
        freq = linear.weight.size(1) // channels
        # Linear input index = channel * F' + f: as a conv kernel (odim, channels, F', 1).
        weight = linear.weight.detach().reshape(odim, channels, freq, 1)
        self.split_sizes = _sizes(freq, MAX_KERNEL)
        self.linear = torch.nn.ModuleList()
        start = 0
        for index, k in enumerate(self.split_sizes):
            conv = torch.nn.Conv2d(channels, odim, (k, 1), bias=index == 0)
            conv.weight = torch.nn.Parameter(weight[:, :, start : start + k].clone())
            if index == 0:
                conv.bias = torch.nn.Parameter(linear.bias.detach().clone())
            self.linear.append(conv)
            start += k
        window = decoding_window(4, embed.subsampling_rate, embed.right_context)  # four output frames
        x = _random(1, window, feature_dim) * 3 + 4
        with torch.no_grad():
            normalized = cmvn(x) if cmvn is not None else x
            ref, _, _ = embed(normalized, torch.ones(1, 1, window, dtype=torch.bool))
            check_parity("subsampling", ref, from_4d(self(x.transpose(1, 2).unsqueeze(1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (1, 1, F, W) -> (1, D, 1, T')."""
        if self.has_cmvn:
            x = (x - self.cmvn_mean) * self.cmvn_istd
        x = self.conv(x)  # (1, C, F', T')
        parts = chunks_of(x, self.split_sizes, dim=2)
        out = self.linear[0](parts[0])
        for conv, part in zip(self.linear[1:], parts[1:]):
            out = out + conv(part)
        return out


class Attention4d(torch.nn.Module):
    """Multi-head self-attention on one chunk with a static cache.

    x (1, D, 1, c), cache (1, h, 2*d_k, T) keys then values along height, mask (1, h, c, T + c)
    float, 1 = visible -> (1, D, 1, c), new cache (1, h, 2*d_k, T + c) (the caller keeps the last T).
    The score/softmax core (two feature maps multiplied) runs on the CPU on X3, as in WeNet's export;
    the four projections are 1x1 convs on the BPU."""

    def __init__(self, attention: MultiHeadedAttention, chunk_size: int, cache_frames: int):
        super().__init__()
        self.h, self.d_k = attention.h, attention.d_k
        self.scale = 1.0 / math.sqrt(self.d_k)
        query_bias = None
        if isinstance(attention, RelPositionMultiHeadedAttention):
            # no_pos: pos_emb = 0 so matrix_bd = 0, and (q + u) . k folds u into the query bias.
            query_bias = attention.pos_bias_u.detach().reshape(-1)
        self.linear_q = Pointwise.of(attention.linear_q, query_bias)
        self.linear_k = Pointwise.of(attention.linear_k)
        self.linear_v = Pointwise.of(attention.linear_v)
        self.linear_out = Pointwise.of(attention.linear_out)
        d = self.h * self.d_k
        x, cache = _random(1, chunk_size, d), _random(1, self.h, cache_frames, 2 * self.d_k)
        mask = torch.ones(1, chunk_size, cache_frames + chunk_size, dtype=torch.bool)
        mask[:, :, : cache_frames // 2] = False
        with torch.no_grad():
            ref, ref_cache = attention(x, x, x, mask, torch.zeros(1, cache_frames + chunk_size, d), cache)
            mask4 = mask.unsqueeze(1).repeat(1, self.h, 1, 1).float()
            out, new_cache = self(to_4d(x), cache.transpose(2, 3), mask4)
            check_parity("attention", ref, from_4d(out))
            check_parity("attention cache", ref_cache, new_cache.transpose(2, 3))

    def forward(self, x: torch.Tensor, cache: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        c = x.size(3)
        q = self.linear_q(x).reshape(1, self.h, self.d_k, c).transpose(2, 3)  # (1, h, c, d_k)
        k = self.linear_k(x).reshape(1, self.h, self.d_k, c)
        v = self.linear_v(x).reshape(1, self.h, self.d_k, c)
        k_cache, v_cache = torch.split(cache, self.d_k, dim=2)
        k = torch.cat([k_cache, k], dim=3)  # (1, h, d_k, T + c)
        v = torch.cat([v_cache, v], dim=3)
        new_cache = torch.cat([k, v], dim=2)
        scores = torch.matmul(q, k) * self.scale  # (1, h, c, T + c)
        hidden = mask.eq(0)
        attn = torch.softmax(scores.masked_fill(hidden, -float("inf")), dim=-1).masked_fill(hidden, 0.0)
        context = torch.matmul(v, attn.transpose(2, 3))  # (1, h, d_k, c)
        return self.linear_out(context.reshape(1, self.h * self.d_k, 1, c)), new_cache


def _activation(module: torch.nn.Module) -> torch.nn.Module:
    return type(module)()


class FeedForward4d(torch.nn.Module):
    """w_2(act(w_1 x)) * scale on (1, D, 1, T); the macaron 0.5 is folded into w_2 (exact: a power of 2)."""

    def __init__(self, ffn: PositionwiseFeedForward, scale: float = 1.0):
        super().__init__()
        self.w_1 = Pointwise.of(ffn.w_1)
        self.activation = _activation(ffn.activation)
        bias = ffn.w_2.bias.detach() * scale if ffn.w_2.bias is not None else None
        self.w_2 = Pointwise(ffn.w_2.weight.detach() * scale, bias)
        x = _random(1, 5, ffn.w_1.weight.size(1))
        with torch.no_grad():
            check_parity("feed forward", ffn(x) * scale, from_4d(self(to_4d(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.activation(self.w_1(x)))


class MoE4d(torch.nn.Module):
    """Mixture of experts in its exact dense form on (1, D, 1, T): every expert runs, the gate's
    softmax over its top-k logits weights them. Routing would need data-dependent shapes, which a
    static BPU graph cannot have; the gate's TopK/Softmax run on the CPU, the experts on the BPU.
    Weights (1, E, 1, T) are expanded to (1, E*D, 1, T) by a grouped 1x1 conv of ones (exact),
    so every weighting is a same-shape Mul rather than a channel broadcast."""

    def __init__(self, moe: MoEFFNLayer, scale: float = 1.0):
        super().__init__()
        self.k = moe.n_expert_activated
        self.n_expert = moe.n_expert
        d = moe.gate.weight.size(1)
        self.d = d
        self.gate = Pointwise.of(moe.gate)
        self.expand = torch.nn.Conv2d(self.n_expert, self.n_expert * d, 1, groups=self.n_expert, bias=False)
        self.expand.weight = torch.nn.Parameter(torch.ones(self.n_expert * d, 1, 1, 1))
        self.experts = torch.nn.ModuleList(FeedForward4d(expert, scale) for expert in moe.experts)
        x = _random(1, 9, d)
        with torch.no_grad():
            check_parity("mixture of experts", moe(x) * scale, from_4d(self(to_4d(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        router = self.gate(x)  # (1, E, 1, T)
        kth_best = torch.topk(router, self.k, dim=1).values[:, -1:]
        weights = torch.softmax(router.masked_fill(router < kth_best, -float("inf")), dim=1)
        weights = torch.split(self.expand(weights), self.d, dim=1)
        out = weights[0] * self.experts[0](x)
        for weight, expert in zip(weights[1:], self.experts[1:]):
            out = out + weight * expert(x)
        return out


def feed_forward_4d(ffn: torch.nn.Module, scale: float) -> torch.nn.Module:
    return MoE4d(ffn, scale) if isinstance(ffn, MoEFFNLayer) else FeedForward4d(ffn, scale)


class ConvModule4d(torch.nn.Module):
    """Causal conformer conv module: x (1, D, 1, c), cache (1, D, 1, K-1) -> (1, D, 1, c), new cache.

    The depthwise Conv1d(K) becomes a (1, K) Conv2d (K <= 7 by contract); GLU exports as
    Split + Sigmoid + Mul; BatchNorm keeps its statistics (folded into the conv by the compiler)."""

    def __init__(self, conv: ConvolutionModule, layer_norm_on_bpu: bool):
        super().__init__()
        self.lorder = conv.lorder
        channels = conv.depthwise_conv.in_channels
        self.pointwise_conv1 = Pointwise.of(conv.pointwise_conv1)
        dw = conv.depthwise_conv
        self.depthwise_conv = torch.nn.Conv2d(channels, channels, (1, dw.kernel_size[0]), groups=channels,
                                              bias=dw.bias is not None)
        self.depthwise_conv.weight = torch.nn.Parameter(dw.weight.detach().unsqueeze(2).clone())
        if dw.bias is not None:
            self.depthwise_conv.bias = torch.nn.Parameter(dw.bias.detach().clone())
        if conv.use_layer_norm:
            self.norm = LayerNorm4d(conv.norm, layer_norm_on_bpu)
        else:
            self.norm = torch.nn.BatchNorm2d(channels, eps=conv.norm.eps)
            self.norm.load_state_dict(conv.norm.state_dict())
            self.norm.eval()
        self.activation = _activation(conv.activation)
        self.pointwise_conv2 = Pointwise.of(conv.pointwise_conv2)
        x, cache = _random(1, 5, channels), _random(1, channels, self.lorder)
        with torch.no_grad():
            ref, ref_cache = conv(x, cache=cache)
            out, new_cache = self(to_4d(x), cache.unsqueeze(2))
            check_parity("conv module", ref, from_4d(out))
            check_parity("conv module cache", ref_cache, new_cache.squeeze(2))

    def forward(self, x: torch.Tensor, cache: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([cache, x], dim=3)
        new_cache = x[:, :, :, -self.lorder :]
        x = torch.nn.functional.glu(self.pointwise_conv1(x), dim=1)
        x = self.activation(self.norm(self.depthwise_conv(x)))
        return self.pointwise_conv2(x), new_cache


def residual(x: torch.Tensor, norm: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor],
             normalize_before: bool) -> torch.Tensor:
    """x + fn(norm x) (pre-norm) or norm(x + fn x) (post-norm)."""
    if normalize_before:
        return x + fn(norm(x))
    return norm(x + fn(x))
