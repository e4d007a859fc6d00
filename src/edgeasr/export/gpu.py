"""gpu/: batched models in the layout of WeNet's GPU (Triton) export.

encoder.onnx: full-context, any batch and length; encoder_streaming.onnx: one chunk for a batch of
independent streams (own offsets, caches and cache masks); decoder.onnx: attention rescoring inside
the graph, returning best_index (ctc_weight and reverse_weight are inputs, so changing them does
not need a new export).
"""

from pathlib import Path
from typing import Dict

import torch

from ..model.asr_model import ASRModel
from .graphs import BatchEncoder, BatchRescoringDecoder, BatchStreamingEncoder, dense_moe, io_shapes
from .metadata import model_geometry, write_metadata
from .onnx_io import export_graph


def export_gpu(model: ASRModel, out_dir: Path, chunk_size: int, left_chunks: int, beam_size: int,
               opset: int = 13) -> Dict[str, Path]:
    meta = {**model_geometry(model, chunk_size, left_chunks), "beam_size": beam_size, "opset": opset,
            "model_type": "wenet_gpu"}
    enc = model.encoder
    feat = enc.input_size
    paths = {"encoder": out_dir / "encoder.onnx", "encoder_streaming": out_dir / "encoder_streaming.onnx"}
    with dense_moe(model):
        export_graph(
            BatchEncoder(model, beam_size),
            (torch.randn(2, 200, feat), torch.tensor([200, 150], dtype=torch.int32)),
            paths["encoder"],
            ["speech", "speech_lengths"],
            ["encoder_out", "encoder_out_lens", "ctc_log_probs", "beam_log_probs", "beam_log_probs_idx"],
            {"speech": {0: "B", 1: "T"}, "speech_lengths": {0: "B"}, "encoder_out": {0: "B", 1: "T_OUT"},
             "encoder_out_lens": {0: "B"}, "ctc_log_probs": {0: "B", 1: "T_OUT"},
             "beam_log_probs": {0: "B", 1: "T_OUT"}, "beam_log_probs_idx": {0: "B", 1: "T_OUT"}},
            opset,
        )
        layers, heads, d_k, cache, lorder = io_shapes(model, chunk_size, left_chunks)
        window = meta["decoding_window"]
        b = 2
        export_graph(
            BatchStreamingEncoder(model, beam_size),
            (
                torch.randn(b, window, feat),
                torch.tensor([window, window - 3], dtype=torch.int32),
                torch.zeros(b, 1, dtype=torch.int64),
                torch.zeros(b, layers, heads, cache, 2 * d_k),
                torch.zeros(b, layers, enc.output_size(), lorder),
                torch.zeros(b, 1, cache),
            ),
            paths["encoder_streaming"],
            ["chunk_xs", "chunk_lens", "offset", "att_cache", "cnn_cache", "cache_mask"],
            ["log_probs", "log_probs_idx", "chunk_out", "chunk_out_lens", "r_offset", "r_att_cache",
             "r_cnn_cache", "r_cache_mask"],
            {name: {0: "B"} for name in ("chunk_xs", "chunk_lens", "offset", "att_cache", "cnn_cache", "cache_mask",
                                         "log_probs", "log_probs_idx", "chunk_out", "chunk_out_lens", "r_offset",
                                         "r_att_cache", "r_cnn_cache", "r_cache_mask")},
            opset,
        )
    if model.decoder is not None:
        paths["decoder"] = out_dir / "decoder.onnx"
        k, length = 3, 6
        hyps = torch.randint(3, model.vocab_size - 1, (2, k, length))
        hyps[:, :, 0] = model.sos
        export_graph(
            BatchRescoringDecoder(model),
            (torch.randn(2, 30, enc.output_size()), torch.tensor([30, 22], dtype=torch.int32), hyps,
             torch.full((2, k), length - 1, dtype=torch.int32), hyps.clone(), torch.randn(2, k),
             torch.tensor([0.5]), torch.tensor([0.3])),
            paths["decoder"],
            ["encoder_out", "encoder_out_lens", "hyps_pad_sos_eos", "hyps_lens_sos", "r_hyps_pad_sos_eos",
             "ctc_score", "ctc_weight", "reverse_weight"],
            ["best_index"],
            {"encoder_out": {0: "B", 1: "T"}, "encoder_out_lens": {0: "B"},
             "hyps_pad_sos_eos": {0: "B", 1: "BEAM", 2: "L"}, "hyps_lens_sos": {0: "B", 1: "BEAM"},
             "r_hyps_pad_sos_eos": {0: "B", 1: "BEAM", 2: "L"}, "ctc_score": {0: "B", 1: "BEAM"},
             "best_index": {0: "B"}},
            opset,
            optional_inputs=["r_hyps_pad_sos_eos", "reverse_weight"],  # unused without a right decoder
        )
    for path in paths.values():
        write_metadata(path, meta)
    return paths
