"""Chunk-by-chunk decoding equals the full-utterance forward with the equivalent chunk mask."""

import pytest
import torch

from conftest import ARCHITECTURES, make_model

TOL = 1e-5
# A full-context conv module sees the next chunk in a masked full forward but zeros when streamed
# (WeNet's own behaviour): the identity holds for causal models only.
CAUSAL = sorted(a for a, c in ARCHITECTURES.items() if c["encoder"] == "transformer" or c["encoder_conf"].get("causal"))


@pytest.mark.parametrize("arch", CAUSAL)
@pytest.mark.parametrize("chunk,left", [(1, -1), (4, 2), (3, -1), (8, 1), (5, 0)])
def test_chunk_by_chunk_equals_masked_full_forward(arch, feats, chunk, left):
    model = make_model(arch)
    with torch.no_grad():
        full, mask = model.encoder(feats, torch.tensor([feats.size(1)]), chunk, left)
        streamed, _ = model.encoder.forward_chunk_by_chunk(feats, chunk, left)
    # WeNet's loop drops trailing frames that cannot fill one output frame; so does full conv subsampling.
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max().item() < TOL


def test_fixed_size_cache_with_att_mask_equals_growing_cache(feats):
    """The ONNX-style call (zero-filled cache of fixed size + att_mask) equals WeNet's growing cache."""
    model = make_model("conformer_nopos_conv2d8_relu_causal_bn")
    enc = model.encoder
    chunk, left = 2, 3
    sub, ctx = enc.embed.subsampling_rate, enc.embed.right_context + 1
    window, stride = (chunk - 1) * sub + ctx, sub * chunk
    layers, heads, d = len(enc.encoders), enc.attention_heads, enc.output_size()
    cache_len = chunk * left
    att_cache = torch.zeros(layers, heads, cache_len, 2 * d // heads)
    cnn_cache = torch.zeros(layers, 1, d, 6)
    ref, _ = enc.forward_chunk_by_chunk(feats, chunk, left)
    outs, offset = [], 0
    with torch.no_grad():
        for i, cur in enumerate(range(0, feats.size(1) - ctx + 1, stride)):
            xs = feats[:, cur : cur + window]
            if xs.size(1) < window:
                break
            filled = min(i * chunk, cache_len)
            att_mask = torch.zeros(1, 1, cache_len + chunk, dtype=torch.bool)
            att_mask[:, :, cache_len - filled :] = True
            y, att_cache, cnn_cache = enc.forward_chunk(xs, offset, cache_len, att_cache, cnn_cache, att_mask)
            outs.append(y)
            offset += y.size(1)
    got = torch.cat(outs, 1)
    assert (got - ref[:, : got.size(1)]).abs().max().item() < TOL


def test_cache_shapes_follow_wenet_layout(feats):
    model = make_model("conformer_relpos_conv2d_swish_ln")
    enc = model.encoder
    with torch.no_grad():
        y, att, cnn = enc.forward_chunk(feats[:, :31], 0, 8)
        y2, att2, cnn2 = enc.forward_chunk(feats[:, 28:59], y.size(1), 8, att, cnn)
    heads, d = enc.attention_heads, enc.output_size()
    assert y.shape == (1, 7, d)
    assert att.shape == (2, heads, 7, 2 * d // heads)  # (L, h, T_cache, 2 * d_k)
    assert att2.shape == (2, heads, 8, 2 * d // heads)  # trimmed to required_cache_size
    assert cnn.shape == cnn2.shape == (2, 1, d, 4)  # (L, 1, D, K - 1)


def test_full_context_differs_from_chunked(feats):
    """The chunk mask is really applied: a non-trivial model sees less context when chunked."""
    model = make_model("conformer_nopos_conv2d8_relu_causal_bn")
    with torch.no_grad():
        full, _ = model.encoder(feats, torch.tensor([feats.size(1)]), -1, -1)
        chunked, _ = model.encoder(feats, torch.tensor([feats.size(1)]), 2, 1)
    assert (full - chunked).abs().max().item() > 1e-3


def test_causal_conv_module_matches_its_definition():
    """Independent of the streaming path: zero-pad the module input by K-1 frames (WeNet pads x, so
    padded frames become GLU(bias), not 0), pointwise + GLU, depthwise over [t-K+1, t], norm, act, pointwise."""
    from edgeasr.model.convolution import ConvolutionModule

    torch.manual_seed(0)
    m = ConvolutionModule(4, 7, torch.nn.ReLU(), "batch_norm", causal=True).eval()
    x = torch.randn(1, 20, 4)
    with torch.no_grad():
        y, _ = m(x)
        h = torch.nn.functional.glu(m.pointwise_conv1(torch.nn.functional.pad(x.transpose(1, 2), (6, 0))), dim=1)
        w = m.depthwise_conv.weight[:, 0, :]
        ref = torch.stack([(w * h[0, :, t : t + 7]).sum(1) for t in range(20)], dim=1)[None]
        ref = ref + m.depthwise_conv.bias[:, None]
        ref = m.pointwise_conv2(torch.relu(m.norm(ref))).transpose(1, 2)
    assert (y - ref).abs().max().item() < 1e-6


def test_non_causal_conv_module_streams_with_zero_future(feats):
    """Streamed, a non-causal conv module sees zeros past each window (WeNet's behaviour), so the
    result differs from the masked full forward: the reason it is excluded above."""
    model = make_model("conformer_relpos_noncausal_k15")
    with torch.no_grad():
        streamed, _ = model.encoder.forward_chunk_by_chunk(feats, 4, -1)
        full, _ = model.encoder(feats, torch.tensor([feats.size(1)]), 4, -1)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max().item() > 1e-4


@pytest.mark.parametrize("subsampling,right_context", [(4, 6), (6, 10), (8, 14)])
def test_output_frames_inverts_the_decoding_window(subsampling, right_context):
    """output_frames (what the X3 backend uses for a short last window) against the model's own
    subsampling of real inputs, for every window length around a chunk's."""
    from edgeasr.model.embedding import NoPositionalEncoding
    from edgeasr.model.subsampling import SUBSAMPLING_CLASSES, decoding_window, output_frames

    layer = next(c for c in SUBSAMPLING_CLASSES.values() if (c.subsampling_rate, c.right_context) == (subsampling, right_context))
    module = layer(20, 16, 0.0, NoPositionalEncoding(16, 0.0))
    for chunk in (1, 4, 8):
        window = decoding_window(chunk, subsampling, right_context)
        assert output_frames(window, subsampling, right_context) == chunk
        assert output_frames(right_context, subsampling, right_context) == 0  # one frame short of any output
        for frames in range(right_context + 1, window + subsampling + 1):
            made = module(torch.zeros(1, frames, 20), torch.ones(1, 1, frames, dtype=torch.bool))[0].shape[1]
            assert output_frames(frames, subsampling, right_context) == made
