"""cpu/: WeNet's onnxruntime-runtime models: encoder.onnx (forward_chunk), ctc.onnx, decoder.onnx,
and their dynamically quantized INT8 copies under the same names in `<out_dir>_int8/` (`int8.py`: they
load in the onnxruntime WeNet's runtime pins too), so `decoder_main --onnx_dir` takes either folder.
A CTC-only model gets a neutral decoder.onnx (all scores 0, metadata `decoder: none`): WeNet's runtime
will not start without the file.

The encoder keeps a fixed-size attention cache of chunk * num_left_chunks frames and masks the slots not
yet filled with att_mask (WeNet's "real cache, real mask" export); with num_left_chunks < 0 (unlimited)
the cache grows (a dynamic axis) and the graph has no att_mask / required_cache_size inputs. Inputs a
model does not read are absent, as in the file WeNet's exporter writes (offset of a no_pos model,
cnn_cache without a causal conv module), and WeNet's runtime feeds inputs by name.
"""

from pathlib import Path
from typing import Dict

import torch

from ..artifact.metadata import model_geometry, write_metadata
from ..artifact.onnx_io import export_graph
from ..model.asr_model import ASRModel
from ..model.embedding import NoPositionalEncoding
from ..model.mask import cache_slot_mask
from .graphs import (CtcHead, NeutralRescoringDecoder, RescoringDecoder, StreamingEncoder, io_shapes, moe_form,
                     moe_metadata)
from .int8 import SETTINGS as INT8_SETTINGS
from .int8 import quantize_int8


def streaming_example_inputs(model: ASRModel, chunk_size: int, num_left_chunks: int) -> tuple:
    """Inputs of the first chunk in the runtime's layout (fixed cache, nothing filled yet)."""
    layers, heads, d_k, cache, lorder = io_shapes(model, chunk_size, num_left_chunks)
    geometry = model_geometry(model, chunk_size, num_left_chunks)
    chunk = torch.randn(1, geometry["decoding_window"], geometry["feature_size"])
    if num_left_chunks > 0:
        required = cache
        att_mask = torch.from_numpy(cache_slot_mask(cache, chunk_size, 0))[None, None]
    else:
        required = -1 if num_left_chunks < 0 else 0
        att_mask = torch.ones(0, 0, 0, dtype=torch.bool)
    att_cache = torch.zeros(layers, heads, cache, 2 * d_k)
    cnn_cache = torch.zeros(layers, 1, model.encoder.output_size(), lorder)
    return chunk, torch.tensor(0), torch.tensor(required), att_cache, cnn_cache, att_mask


def export_cpu_encoder(model: ASRModel, path: Path, chunk_size: int, num_left_chunks: int, opset: int = 13,
                       moe: str = "sparse") -> None:
    """encoder.onnx alone (WeNet's forward_chunk interface, MoE layers in form `moe`), no metadata."""
    _, _, _, _, conv_cache_frames = io_shapes(model, chunk_size, num_left_chunks)
    unread = (["cnn_cache"] if conv_cache_frames == 0 else []) + (
        ["required_cache_size", "att_mask"] if num_left_chunks <= 0 else []
    ) + (["offset"] if isinstance(model.encoder.embed.pos_enc, NoPositionalEncoding) else [])
    with moe_form(model, moe):
        export_graph(
            StreamingEncoder(model),
            streaming_example_inputs(model, chunk_size, num_left_chunks),
            path,
            ["chunk", "offset", "required_cache_size", "att_cache", "cnn_cache", "att_mask"],
            ["output", "r_att_cache", "r_cnn_cache"],
            {
                "chunk": {1: "T"},
                "att_cache": {2: "T_CACHE"},
                "att_mask": {2: "T_ADD_T_CACHE"},
                "output": {1: "T"},
                "r_att_cache": {2: "T_CACHE"},
            },
            opset,
            optional_inputs=unread,
        )


def export_cpu(model: ASRModel, out_dir: Path, chunk_size: int, num_left_chunks: int, opset: int = 13,
               moe: str = "sparse") -> Dict[str, Path]:
    """Write encoder/ctc/decoder .onnx in `out_dir` and their INT8 copies in `<out_dir>_int8`; returns
    name -> path (`<name>_int8` for the copies). MoE layers in form `moe` (export.graphs.moe_form;
    the decoder has none)."""
    meta = {**model_geometry(model, chunk_size, num_left_chunks), "opset": opset, "model_type": "wenet_cpu",
            **moe_metadata(model, moe)}
    d = model.encoder.output_size()
    paths = {name: out_dir / f"{name}.onnx" for name in ("encoder", "ctc", "decoder")}
    export_cpu_encoder(model, paths["encoder"], chunk_size, num_left_chunks, opset, moe)
    export_graph(CtcHead(model), (torch.randn(1, chunk_size, d),), paths["ctc"], ["hidden"], ["probs"],
                 {"hidden": {1: "T"}, "probs": {1: "T"}}, opset)
    hyps = torch.randint(3, model.vocab_size - 1, (4, 7))
    hyps[:, 0] = model.sos
    export_graph(
        RescoringDecoder(model) if model.decoder is not None else NeutralRescoringDecoder(model),
        (hyps, torch.tensor([7, 5, 3, 1]), torch.randn(1, 20, d)),
        paths["decoder"],
        ["hyps", "hyps_lens", "encoder_out"],
        ["score", "r_score"],
        {"hyps": {0: "NUM_HYPS", 1: "L"}, "hyps_lens": {0: "NUM_HYPS"}, "encoder_out": {1: "T"},
         "score": {0: "NUM_HYPS", 1: "L"}, "r_score": {0: "NUM_HYPS", 1: "L"}},
        opset,
    )
    int8_dir = out_dir.with_name(out_dir.name + "_int8")
    int8_dir.mkdir(parents=True, exist_ok=True)
    for name in list(paths):
        write_metadata(paths[name], meta)
        quantized = int8_dir / f"{name}.onnx"
        quantize_int8(paths[name], quantized)
        write_metadata(quantized, {**meta, "quantization": INT8_SETTINGS})
        paths[f"{name}_int8"] = quantized
    return paths


def decoder_main_call(onnx_dir: Path, units: Path, chunk_size: int, num_left_chunks: int, ctc_weight: float,
                      reverse_weight: float, nbest: int) -> str:
    """The WeNet C++ runtime's command (runtime/onnxruntime `decoder_main`) that decodes as the
    evaluation does: attention rescoring of `nbest` CTC prefix-beam hypotheses, score = attention +
    ctc_weight * CTC, the right-to-left decoder weighted by reverse_weight. NOTE: the chunk and left
    chunks must be passed: with the runtime's defaults (16, -1) it feeds no att_mask to a graph with a
    fixed cache, every utterance fails inside its thread pool, and it exits 0 with an empty result."""
    return (f"decoder_main --onnx_dir {onnx_dir} --unit_path {units} --chunk_size {chunk_size} "
            f"--num_left_chunks {num_left_chunks} --ctc_weight {ctc_weight} --reverse_weight {reverse_weight} "
            f"--rescoring_weight 1.0 --nbest {nbest} --wav_scp WAV_SCP --result RESULT")
