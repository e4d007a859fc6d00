"""The torch modules that are traced into ONNX graphs; each states its I/O names and shapes.

They call the model's own forward functions, so an export is the model, not a copy of its logic.
"""

from contextlib import contextmanager
from typing import Dict, Iterator, Tuple

import torch

from ..model.asr_model import ASRModel
from ..model.convolution import ConvolutionModule
from ..model.ffn import moe_layers
from ..model.mask import make_pad_mask


@contextmanager
def moe_form(model: torch.nn.Module, form: str) -> Iterator[None]:
    """Run MoE layers in `form` (model.ffn.MOE_FORMS) inside the block: an export traces `sparse`
    (only the k selected experts, any token count per expert) or `dense` (every expert, static
    shapes: the NPU graphs). The routed form indexes in place, and the tracer would bake its shapes."""
    if form not in ("sparse", "dense"):
        raise ValueError(f"MoE export form {form!r}: sparse or dense")
    layers = list(moe_layers(model).values())
    for layer in layers:
        layer.form = form
    try:
        yield
    finally:
        for layer in layers:
            layer.form = "routed"


@contextmanager
def padding_as_short_chunks(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block, non-causal conv modules zero padded frames before the depthwise conv too, so a
    fixed-shape chunk padded with zeros computes what PyTorch's shorter last chunk does."""
    modules = [m for m in model.modules() if isinstance(m, ConvolutionModule) and m.lorder == 0]
    for module in modules:
        module.mask_depthwise_input = True
    try:
        yield
    finally:
        for module in modules:
            module.mask_depthwise_input = False


def moe_metadata(model: torch.nn.Module, form: str) -> Dict[str, str]:
    """The metadata key saying which MoE form a graph holds ("none" without MoE layers)."""
    return {"moe_form": form if moe_layers(model) else "none"}


class StreamingEncoder(torch.nn.Module):
    """WeNet's `forward_chunk` with tensor offset / required_cache_size (cpu/encoder.onnx).

    chunk (1, W, F), offset () int64, required_cache_size () int64, att_cache (L, h, C, 2*d_k),
    cnn_cache (L, 1, D, K-1), att_mask (1, 1, C + chunk) bool
    -> output (1, chunk, D), r_att_cache (L, h, C, 2*d_k), r_cnn_cache (L, 1, D, K-1)

    Inputs the model does not read are absent from the graph, exactly as in WeNet's export:
    `offset` of a no_pos model, `cnn_cache` without a causal conv module, `required_cache_size` and
    `att_mask` with unlimited left context (C grows by `chunk` per call then, and the mask is empty).
    WeNet's runtime feeds inputs by name; sherpa-onnx feeds six by position, so its wrapper keeps
    every input (keep_all_inputs).
    """

    def __init__(self, model: ASRModel, keep_all_inputs: bool = False):
        super().__init__()
        self.encoder = model.encoder
        self.keep_all_inputs = keep_all_inputs

    def forward(self, chunk, offset, required_cache_size, att_cache, cnn_cache, att_mask):
        out, r_att_cache, r_cnn_cache = self.encoder.forward_chunk(
            chunk, offset, required_cache_size, att_cache, cnn_cache, att_mask
        )
        if self.keep_all_inputs:  # an exact no-op keeps `offset` in a no_pos graph
            out = out + 0.0 * offset.to(out.dtype)
        # r_cnn_cache stays the third output: WeNet's runtime reads outputs by position.
        return out, r_att_cache, r_cnn_cache


class CtcHead(torch.nn.Module):
    """hidden (1, T, D) -> probs (1, T, V) log-probabilities (cpu/ctc.onnx)."""

    def __init__(self, model: ASRModel):
        super().__init__()
        self.ctc = model.ctc

    def forward(self, hidden):
        return self.ctc.log_softmax(hidden)


def reverse_hyps(hyps: torch.Tensor, hyps_lens: torch.Tensor, eos: int) -> torch.Tensor:
    """[sos, y1..yn, eos-pad] (N, L) with lens n+1 -> [sos, yn..y1, eos-pad], without pad_sequence."""
    tokens = hyps[:, 1:]
    lens = (hyps_lens - 1).unsqueeze(1)
    steps = torch.arange(tokens.size(1), device=hyps.device).unsqueeze(0)
    valid = steps < lens
    index = (lens - 1 - steps) * valid
    reversed_tokens = torch.where(valid, torch.gather(tokens, 1, index), torch.full_like(tokens, eos))
    return torch.cat([hyps[:, :1], reversed_tokens], dim=1)


class RescoringDecoder(torch.nn.Module):
    """Attention rescoring scores for N hypotheses of one utterance (cpu/decoder.onnx).

    hyps (N, L) int64 = [sos, tokens.., eos padding], hyps_lens (N,) int64 = tokens + 1,
    encoder_out (1, T, D) -> score (N, L, V), r_score (N, L, V): decoder log-probabilities;
    r_score reads each hypothesis right to left (zeros without a right-to-left decoder).
    """

    def __init__(self, model: ASRModel):
        super().__init__()
        self.decoder = model.decoder
        self.eos = model.eos
        self.bidirectional = hasattr(model.decoder, "right_decoder")

    def forward(self, hyps, hyps_lens, encoder_out):
        num_hyps = hyps.size(0)
        memory = encoder_out.repeat(num_hyps, 1, 1)
        memory_mask = torch.ones(num_hyps, 1, memory.size(1), dtype=torch.bool, device=memory.device)
        r_hyps = reverse_hyps(hyps, hyps_lens, self.eos)
        out, r_out, _ = self.decoder(memory, memory_mask, hyps, hyps_lens, r_hyps, 1.0 if self.bidirectional else 0.0)
        score = torch.log_softmax(out, dim=-1)
        r_score = torch.log_softmax(r_out, dim=-1) if self.bidirectional else torch.zeros_like(score)
        return score, r_score


class NeutralRescoringDecoder(torch.nn.Module):
    """decoder.onnx of a CTC-only model: RescoringDecoder's I/O, every score 0.

    WeNet's runtime loads decoder.onnx unconditionally and exits without one; with all-zero
    attention scores its rescoring keeps the CTC prefix-beam ranking, which is what a CTC-only
    model means. hyps (N, L), hyps_lens (N,), encoder_out (1, T, D) -> score, r_score (N, L, V).
    """

    def __init__(self, model: ASRModel):
        super().__init__()
        self.vocab_size = model.vocab_size

    def forward(self, hyps, hyps_lens, encoder_out):
        # The runtime feeds all three inputs in order: keep each in the graph with an exact no-op.
        zero = 0.0 * (hyps_lens.sum().to(encoder_out.dtype) + encoder_out.sum())
        score = torch.zeros(hyps.size(0), hyps.size(1), self.vocab_size, dtype=encoder_out.dtype) + zero
        return score, score


class BatchEncoder(torch.nn.Module):
    """Batched full-context encoder with CTC and its top-k (gpu/offline/encoder.onnx).

    speech (B, T, F), speech_lengths (B,) int32 -> encoder_out (B, T', D), encoder_out_lens (B,) int32,
    ctc_log_probs (B, T', V), beam_log_probs (B, T', K), beam_log_probs_idx (B, T', K) int64
    """

    def __init__(self, model: ASRModel, beam_size: int):
        super().__init__()
        self.encoder = model.encoder
        self.ctc = model.ctc
        self.beam_size = beam_size

    def forward(self, speech, speech_lengths):
        encoder_out, mask = self.encoder(speech, speech_lengths, -1, -1)
        lens = mask.squeeze(1).sum(1).int()
        log_probs = self.ctc.log_softmax(encoder_out)
        beam_log_probs, beam_idx = torch.topk(log_probs, self.beam_size, dim=2)
        return encoder_out, lens, log_probs, beam_log_probs, beam_idx


class BatchStreamingEncoder(torch.nn.Module):
    """One chunk for B independent streams, each with its own offset and cache (gpu/streaming/encoder.onnx).

    chunk_xs (B, W, F), chunk_lens (B,) int32, offset (B, 1) int64, att_cache (B, L, h, C, 2*d_k),
    [cnn_cache (B, L, D, K-1),] cache_mask (B, 1, C) float (1 = filled slot)
    -> log_probs (B, chunk, K), log_probs_idx (B, chunk, K), chunk_out (B, chunk, D),
       chunk_out_lens (B,) int32, r_offset, r_att_cache, [r_cnn_cache,] r_cache_mask
    (the conv cache only with a causal conv module, as Triton's two encoder templates have it).

    NOTE: chunk_out_lens counts the output frames whose whole receptive field lies inside
    chunk_lens (the subsampled padding mask), where WeNet's graph returns chunk_lens // subsampling.
    The two differ on a stream's short last chunk (conv2d8, chunk_lens 40: 4 here, 5 there): the
    extra frame is computed from the zero padding, and Triton's scorer would search and rescore it
    as speech. PyTorch's forward of those 40 frames gives 4 (tests/test_export.py).
    """

    def __init__(self, model: ASRModel, beam_size: int):
        super().__init__()
        self.encoder = model.encoder
        self.ctc = model.ctc
        self.beam_size = beam_size
        conv = getattr(model.encoder.encoders[0], "conv_module", None)
        self.has_cnn_cache = conv is not None and conv.lorder > 0

    def forward(self, chunk_xs, chunk_lens, offset, att_cache, *rest):
        cnn_cache, cache_mask = rest if self.has_cnn_cache else (None, rest[0])
        enc = self.encoder
        masks = ~make_pad_mask(chunk_lens, chunk_xs.size(1)).unsqueeze(1)
        xs = enc.global_cmvn(chunk_xs) if enc.global_cmvn is not None else chunk_xs
        xs, _, masks = enc.embed(xs, masks, offset)
        cache_size = att_cache.size(3)
        pos_emb = enc.embed.position_encoding(offset - cache_size, cache_size + xs.size(1))
        att_mask = torch.cat([cache_mask > 0.5, masks], dim=2)  # (B, 1, C + chunk)
        r_att, r_cnn = [], []
        for i, layer in enumerate(enc.encoders):
            layer_cnn_cache = cnn_cache[:, i] if cnn_cache is not None else torch.zeros(0, 0, 0)
            xs, _, new_att, new_cnn = layer(xs, att_mask, pos_emb, masks, att_cache[:, i], layer_cnn_cache)
            r_att.append(new_att[:, :, xs.size(1) :].unsqueeze(1))
            r_cnn.append(new_cnn.unsqueeze(1))
        if enc.normalize_before:
            xs = enc.after_norm(xs)
        log_probs = self.ctc.log_softmax(xs)
        top_log_probs, top_idx = torch.topk(log_probs, self.beam_size, dim=2)
        out_lens = masks.squeeze(1).sum(1).int()
        r_cache_mask = torch.cat([cache_mask, masks.float()], dim=2)[:, :, xs.size(1) :]
        states = (torch.cat(r_cnn, dim=1),) if self.has_cnn_cache else ()
        return (top_log_probs, top_idx, xs, out_lens, offset + out_lens.unsqueeze(1).long(),
                torch.cat(r_att, dim=1), *states, r_cache_mask)


class BatchRescoringDecoder(torch.nn.Module):
    """Attention rescoring inside the graph for B utterances x K hypotheses (gpu/*/decoder.onnx).

    encoder_out (B, T, D), encoder_out_lens (B,) int32, hyps_pad_sos_eos (B, K, L) int64,
    hyps_lens_sos (B, K) int32, [r_hyps_pad_sos_eos (B, K, L) int64,] ctc_score (B, K) float
    -> best_index (B,) int64. hyps_pad_sos_eos: [sos, tokens, eos, eos padding]; lens count sos +
    tokens. ctc_weight and reverse_weight are constants of the graph, as in WeNet's export (its
    Triton template declares these inputs only); r_hyps_pad_sos_eos only with a right-to-left decoder.
    """

    def __init__(self, model: ASRModel, ctc_weight: float, reverse_weight: float):
        super().__init__()
        self.decoder = model.decoder
        self.bidirectional = hasattr(model.decoder, "right_decoder")
        self.ctc_weight = ctc_weight
        self.reverse_weight = reverse_weight if self.bidirectional else 0.0

    def forward(self, encoder_out, encoder_out_lens, hyps_pad_sos_eos, hyps_lens_sos, *rest):
        r_hyps_pad_sos_eos, ctc_score = rest if self.bidirectional else (hyps_pad_sos_eos, rest[0])
        b, k, length = hyps_pad_sos_eos.shape
        memory = encoder_out.unsqueeze(1).repeat(1, k, 1, 1).view(b * k, encoder_out.size(1), -1)
        lens = encoder_out_lens.unsqueeze(1).repeat(1, k).view(-1)
        memory_mask = ~make_pad_mask(lens, encoder_out.size(1)).unsqueeze(1)
        ys_in = hyps_pad_sos_eos.view(b * k, length)[:, :-1]
        r_ys_in = r_hyps_pad_sos_eos.view(b * k, length)[:, :-1]
        ys_lens = hyps_lens_sos.view(-1).long()
        out, r_out, _ = self.decoder(memory, memory_mask, ys_in, ys_lens, r_ys_in, 1.0 if self.bidirectional else 0.0)
        targets = hyps_pad_sos_eos.view(b * k, length)[:, 1:]  # tokens then eos (then eos padding)
        valid = (torch.arange(length - 1, device=targets.device).unsqueeze(0) < ys_lens.unsqueeze(1)).float()
        score = (torch.log_softmax(out, -1).gather(2, targets.unsqueeze(2)).squeeze(2) * valid).sum(1)
        if self.bidirectional:
            r_targets = r_hyps_pad_sos_eos.view(b * k, length)[:, 1:]
            r_score = (torch.log_softmax(r_out, -1).gather(2, r_targets.unsqueeze(2)).squeeze(2) * valid).sum(1)
            score = score * (1 - self.reverse_weight) + r_score * self.reverse_weight
        total = score.view(b, k) + self.ctc_weight * ctc_score
        return torch.argmax(total, dim=1)


def io_shapes(model: ASRModel, chunk_size: int, num_left_chunks: int) -> Tuple[int, int, int, int, int]:
    """(layers, heads, d_k, cache frames, conv cache frames) of the streaming interface."""
    enc = model.encoder
    conv = getattr(enc.encoders[0], "conv_module", None)
    lorder = conv.lorder if conv is not None else 0
    cache = chunk_size * num_left_chunks if num_left_chunks > 0 else 0
    return len(enc.encoders), enc.attention_heads, enc.output_size() // enc.attention_heads, cache, lorder


class FixedCacheEncoder(torch.nn.Module):
    """One chunk of a single stream with a fixed-size cache, every shape static (rk3588/encoder.onnx).

    chunk (1, W, F), att_cache (L, h, C, 2*d_k), [cnn_cache (L, 1, D, K-1),] att_mask (1, chunk, C + chunk)
    float (1 = a filled cache slot or a real frame of this chunk; every row alike), [pos_emb (1, C + chunk, D): the
    sinusoid rows of the keys' positions offset - C .. offset + chunk - 1, clamped at 0]
    -> encoder_out (1, chunk, D), ctc_logits (1, chunk, V), r_att_cache (L, h, C, 2*d_k),
       [r_cnn_cache (L, 1, D, K-1)]
    (cnn_cache only with a causal conv module, pos_emb only with abs_pos / rel_pos.)

    NOTE: the positions come in as a tensor the host slices from the sinusoid table: from an offset
    input the graph would gather rows at a runtime index, and NPU compilers want static float math.
    The cache keeps its C slots and the oldest chunk leaves by a constant slice, where WeNet's
    forward_chunk slices by the runtime value required_cache_size (rknn-toolkit2 refuses that graph:
    "The input 1 of Slice need to be constant"). CTC leaves as logits: the host takes the
    log-softmax, as for the X3 graphs, so no INT8 softmax over the vocabulary. The mask comes with one
    row per query: broadcast over the rows, rknn-toolkit2 runs each block's masked softmax on the CPU
    (measured on the demo: 229 of 237 ops on the NPU; one row per query: all but the mask's Equal).
    """

    def __init__(self, model: ASRModel, has_positions: bool, has_cnn_cache: bool):
        super().__init__()
        self.encoder = model.encoder
        self.ctc = model.ctc
        self.has_positions = has_positions
        self.has_cnn_cache = has_cnn_cache
        conv = getattr(model.encoder.encoders[0], "conv_module", None)
        self.non_causal_conv = conv is not None and conv.lorder == 0

    def forward(self, chunk, att_cache, *rest):
        inputs = list(rest)
        cnn_cache = inputs.pop(0) if self.has_cnn_cache else None
        att_mask = inputs.pop(0)
        enc = self.encoder
        xs = enc.global_cmvn(chunk) if enc.global_cmvn is not None else chunk
        cache, keys = att_cache.size(2), att_mask.size(2)
        pos_emb = inputs.pop(0) if self.has_positions else torch.zeros(1, keys, enc.output_size())
        # NOTE: through embed's own call, so the graph's node names keep the /embed/ scope (layer groups)
        no_padding = torch.ones(1, 1, 0, dtype=torch.bool)  # embed's padding mask: none, the host masks frames
        xs, _, _ = enc.embed(xs, no_padding, positions=pos_emb[:, cache:])  # abs_pos adds these
        frames = xs.size(1)
        # NOTE: a non-causal conv module reads frames to its right, so the padded frames of a short last
        # window are zeroed before it (WeNet's mask_pad), as PyTorch's shorter chunk pads with zeros;
        # a causal one never reads them, and its graph keeps no mask op.
        mask_pad = att_mask[:, :1, keys - frames:] > 0.5 if self.non_causal_conv else torch.ones(0, 0, 0, dtype=torch.bool)
        r_att, r_cnn = [], []
        for i, layer in enumerate(enc.encoders):
            layer_cnn_cache = cnn_cache[i] if cnn_cache is not None else torch.zeros(0, 0, 0)
            xs, _, new_att, new_cnn = layer(xs, att_mask, pos_emb, mask_pad, att_cache=att_cache[i : i + 1],
                                            cnn_cache=layer_cnn_cache)
            r_att.append(new_att[:, :, frames:, :])
            r_cnn.append(new_cnn.unsqueeze(0))
        if enc.normalize_before:
            xs = enc.after_norm(xs)
        states = (torch.cat(r_cnn, dim=0),) if self.has_cnn_cache else ()
        return (xs, self.ctc.ctc_lo(xs), torch.cat(r_att, dim=0), *states)
