"""gpu/: a drop-in for WeNet's Triton model repository (runtime/gpu).

Layout, as `wenet/bin/export_onnx_gpu.py` writes it and `runtime/gpu/scripts/convert.py` reads it
(one folder per export, `--onnx_model_dir`):

    gpu/offline/    encoder.onnx  decoder.onnx  config.yaml   -> model_repo/
    gpu/streaming/  encoder.onnx  decoder.onnx  config.yaml   -> model_repo_stateful/

encoder.onnx (offline): speech (B, T, F), speech_lengths (B,) int32 -> encoder_out, encoder_out_lens,
ctc_log_probs, beam_log_probs, beam_log_probs_idx. encoder.onnx (streaming): one chunk for B
independent streams (own offsets, caches, cache masks; no cnn_cache without a causal conv module,
Triton's template for that case, config_template2). decoder.onnx: attention rescoring inside the
graph -> best_index, with ctc_weight and reverse_weight inside it (WeNet's templates declare 6
inputs, 5 without a right-to-left decoder). config.yaml holds what convert.py reads.

The streaming export needs a fixed cache (WeNet: "<= 0: not allowed in streaming gpu encoder") and a
causal conv module (a non-causal one has no cache, but the template declares one): otherwise only
gpu/offline/ is written and `skipped` says why.
"""

from pathlib import Path
from typing import Dict, Optional

import torch
import yaml

from ..artifact.metadata import model_geometry, write_metadata
from ..artifact.onnx_io import export_graph
from ..model.asr_model import ASRModel
from .graphs import BatchEncoder, BatchRescoringDecoder, BatchStreamingEncoder, io_shapes, moe_form, moe_metadata

CONFIG = "config.yaml"  # the file runtime/gpu/scripts/convert.py reads beside the models


def streaming_unsupported(model: ASRModel, num_left_chunks: int) -> Optional[str]:
    """Why WeNet's Triton streaming model cannot hold this model, or None."""
    if num_left_chunks <= 0:
        return (f"streaming.num_decoding_left_chunks={num_left_chunks}: the Triton streaming encoder keeps a "
                "fixed cache of chunk x left chunks")
    conv = getattr(model.encoder.encoders[0], "conv_module", None)
    if conv is not None and conv.lorder == 0:
        return "non-causal conv module: it has no streaming cache, but Triton's streaming template declares one"
    return None


def export_offline_encoder(model: ASRModel, path: Path, beam_size: int, opset: int) -> None:
    feat = model.encoder.input_size
    export_graph(
        BatchEncoder(model, beam_size),
        (torch.randn(2, 200, feat), torch.tensor([200, 150], dtype=torch.int32)),
        path,
        ["speech", "speech_lengths"],
        ["encoder_out", "encoder_out_lens", "ctc_log_probs", "beam_log_probs", "beam_log_probs_idx"],
        {"speech": {0: "B", 1: "T"}, "speech_lengths": {0: "B"}, "encoder_out": {0: "B", 1: "T_OUT"},
         "encoder_out_lens": {0: "B"}, "ctc_log_probs": {0: "B", 1: "T_OUT"},
         "beam_log_probs": {0: "B", 1: "T_OUT"}, "beam_log_probs_idx": {0: "B", 1: "T_OUT"}},
        opset,
    )


def export_streaming_encoder(model: ASRModel, path: Path, chunk_size: int, num_left_chunks: int, beam_size: int,
                             opset: int) -> None:
    enc = model.encoder
    layers, heads, d_k, cache, lorder = io_shapes(model, chunk_size, num_left_chunks)
    window = model_geometry(model, chunk_size, num_left_chunks)["decoding_window"]
    inputs = ["chunk_xs", "chunk_lens", "offset", "att_cache", "cnn_cache", "cache_mask"]
    outputs = ["log_probs", "log_probs_idx", "chunk_out", "chunk_out_lens", "r_offset", "r_att_cache",
               "r_cnn_cache", "r_cache_mask"]
    if lorder == 0:  # transformer: WeNet's graph and Triton's config_template2 carry no conv cache
        inputs.remove("cnn_cache")
        outputs.remove("r_cnn_cache")
    b = 2
    example = {
        "chunk_xs": torch.randn(b, window, enc.input_size),
        "chunk_lens": torch.tensor([window, window - 3], dtype=torch.int32),
        "offset": torch.zeros(b, 1, dtype=torch.int64),
        "att_cache": torch.zeros(b, layers, heads, cache, 2 * d_k),
        "cnn_cache": torch.zeros(b, layers, enc.output_size(), lorder),
        "cache_mask": torch.zeros(b, 1, cache),
    }
    export_graph(
        BatchStreamingEncoder(model, beam_size),
        tuple(example[name] for name in inputs),
        path,
        inputs,
        outputs,
        {name: {0: "B"} for name in inputs + outputs},
        opset,
    )


def export_rescoring_decoder(model: ASRModel, path: Path, ctc_weight: float, reverse_weight: float,
                             opset: int) -> None:
    decoder = BatchRescoringDecoder(model, ctc_weight, reverse_weight)
    k, length = 3, 6
    hyps = torch.randint(3, model.vocab_size - 1, (2, k, length))
    hyps[:, :, 0] = model.sos
    example = {
        "encoder_out": torch.randn(2, 30, model.encoder.output_size()),
        "encoder_out_lens": torch.tensor([30, 22], dtype=torch.int32),
        "hyps_pad_sos_eos": hyps,
        "hyps_lens_sos": torch.full((2, k), length - 1, dtype=torch.int32),
        "r_hyps_pad_sos_eos": hyps.clone(),
        "ctc_score": torch.randn(2, k),
    }
    inputs = [name for name in example if decoder.bidirectional or name != "r_hyps_pad_sos_eos"]
    export_graph(
        decoder,
        tuple(example[name] for name in inputs),
        path,
        inputs,
        ["best_index"],
        {"encoder_out": {0: "B", 1: "T"}, "encoder_out_lens": {0: "B"},
         "hyps_pad_sos_eos": {0: "B", 1: "BEAM", 2: "L"}, "hyps_lens_sos": {0: "B", 1: "BEAM"},
         "r_hyps_pad_sos_eos": {0: "B", 1: "BEAM", 2: "L"}, "ctc_score": {0: "B", 1: "BEAM"},
         "best_index": {0: "B"}},
        opset,
    )


def export_gpu(model: ASRModel, out_dir: Path, chunk_size: int, num_left_chunks: int, beam_size: int,
               ctc_weight: float, reverse_weight: float, opset: int = 13, moe: str = "sparse") -> Dict[str, object]:
    """Write gpu/offline (and gpu/streaming when the model streams there); returns name -> path,
    plus `skipped`: {family: reason} for what was not written."""
    geometry = model_geometry(model, chunk_size, num_left_chunks)
    meta = {**geometry, **moe_metadata(model, moe), "beam_size": beam_size, "opset": opset, "model_type": "wenet_gpu",
            "ctc_weight": ctc_weight, "reverse_weight": reverse_weight}
    weights = {"beam_size": beam_size, "ctc_weight": ctc_weight, "reverse_weight": reverse_weight, "fp16": False}
    paths: Dict[str, object] = {"offline_encoder": out_dir / "offline" / "encoder.onnx"}
    skipped: Dict[str, str] = {}
    why_not_streaming = streaming_unsupported(model, num_left_chunks)
    with moe_form(model, moe):
        export_offline_encoder(model, paths["offline_encoder"], beam_size, opset)
        if why_not_streaming is None:
            paths["streaming_encoder"] = out_dir / "streaming" / "encoder.onnx"
            export_streaming_encoder(model, paths["streaming_encoder"], chunk_size, num_left_chunks, beam_size, opset)
        else:
            skipped["gpu_streaming"] = why_not_streaming
    folders = {"offline": weights}
    if why_not_streaming is None:
        _, _, _, _, lorder = io_shapes(model, chunk_size, num_left_chunks)
        folders["streaming"] = {
            **weights,
            "subsampling_rate": geometry["subsampling_rate"],
            "context": geometry["right_context"] + 1,
            "decoding_chunk_size": chunk_size,
            "num_decoding_left_chunks": num_left_chunks,
            "feat_size": geometry["feature_size"],
            "decoding_window": geometry["decoding_window"],
            "cnn_module_kernel_cache": lorder,
            "return_ctc_logprobs": False,
        }
    if model.decoder is not None:
        for folder in folders:
            paths[f"{folder}_decoder"] = out_dir / folder / "decoder.onnx"
            export_rescoring_decoder(model, paths[f"{folder}_decoder"], ctc_weight, reverse_weight, opset)
    else:
        skipped["gpu_decoder"] = "CTC-only model: no attention decoder to rescore with"
    for folder, config in folders.items():
        (out_dir / folder / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    for name, path in paths.items():
        write_metadata(path, meta)
    paths["skipped"] = skipped
    return paths
