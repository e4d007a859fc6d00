"""The RK3588's own graph: a static fixed-cache streaming encoder for any model edgeasr loads.

    python stages/export_rknn.py            # (dvc repro export_rknn) -> exp/rknn_export/

Contract: batch 1, the chunk and left chunks of `streaming` with left chunks > 0 (the cache has a
fixed size of chunk x left chunks); conformer (abs_pos, rel_pos or no_pos; selfattn or
rel_selfattn; causal or non-causal conv module, LayerNorm or BatchNorm) or transformer; MoE layers in
their dense form (every expert, static shapes). Nothing of the X3 contract applies: the RKNN
compiler takes the 3-D graph as it is. One graph (export.graphs.FixedCacheEncoder):

    chunk (1, W, F), att_cache (L, h, C, 2*d_k), [cnn_cache (L, 1, D, K-1)], att_mask (1, chunk, C + chunk),
    [pos_emb (1, C + chunk, D)]  ->  encoder_out (1, chunk, D), ctc_logits (1, chunk, V),
    r_att_cache, [r_cnn_cache]

driven by decode.fixed_cache_backend (the metadata says how: model_type, geometry, the position
table). Streamed over whole utterances against PyTorch's forward_chunk_by_chunk at export, within
export.parity.FLOAT_TOLERANCE, before exp/rknn_export is written.
"""

from pathlib import Path
from typing import Dict, Mapping

import torch

from ..artifact.manifest import CTC_MODES, Artifact
from ..artifact.metadata import model_geometry, write_metadata
from ..artifact.onnx_io import export_graph
from ..decode.fixed_cache_backend import MODEL_TYPE
from ..errors import EdgeAsrError
from ..export.graphs import FixedCacheEncoder, io_shapes, moe_form, moe_metadata, padding_as_short_chunks
from ..model.asr_model import ASRModel
from ..model.embedding import NoPositionalEncoding

OPSET = 13
GRAPH = "encoder"  # the one graph of the RK3588 path
FLOAT_ARTIFACT = "rk3588_float"  # the manifest entry compile_rknn takes the graph from
INPUTS = ("chunk", "att_cache", "cnn_cache", "att_mask", "pos_emb")
OUTPUTS = ("encoder_out", "ctc_logits", "r_att_cache", "r_cnn_cache")


def export_fixed_cache(model: ASRModel, chunk_size: int, num_left_chunks: int, path: Path) -> Path:
    """Write the static graph with its metadata; refuses what it cannot hold with one line."""
    if num_left_chunks <= 0:
        raise EdgeAsrError(f"streaming.num_decoding_left_chunks={num_left_chunks}: the RK3588 graph keeps a fixed "
                           "cache of chunk x left chunks (> 0)")
    enc = model.encoder
    layers, heads, d_k, cache, lorder = io_shapes(model, chunk_size, num_left_chunks)
    geometry = model_geometry(model, chunk_size, num_left_chunks)
    pos_enc = enc.embed.pos_enc
    has_positions = not isinstance(pos_enc, NoPositionalEncoding)
    keys = cache + chunk_size
    example = {
        "chunk": torch.randn(1, int(geometry["decoding_window"]), enc.input_size),
        "att_cache": torch.zeros(layers, heads, cache, 2 * d_k),
        "cnn_cache": torch.zeros(layers, 1, enc.output_size(), lorder),
        "att_mask": torch.ones(1, chunk_size, keys),
        "pos_emb": torch.zeros(1, keys, enc.output_size()),
    }
    inputs = [name for name in INPUTS if (name != "cnn_cache" or lorder > 0) and (name != "pos_emb" or has_positions)]
    outputs = [name for name in OUTPUTS if name != "r_cnn_cache" or lorder > 0]
    with moe_form(model, "dense"), padding_as_short_chunks(model):
        export_graph(FixedCacheEncoder(model, has_positions, lorder > 0), tuple(example[n] for n in inputs), path,
                     inputs, outputs, {}, OPSET)
    meta = {**geometry, **moe_metadata(model, "dense"), "model_type": MODEL_TYPE, "opset": OPSET,
            "pos_enc": type(pos_enc).__name__, "pos_max_len": getattr(pos_enc, "max_len", 0)}
    write_metadata(path, meta)
    return path


def fixed_cache_artifacts(out: Path, graph: Path, parity: Mapping[str, float],
                          tolerance: Mapping[str, float]) -> Dict[str, Artifact]:
    """exp/rknn_export's manifest entry: the float graph, run by onnxruntime on the host protocol."""
    return {FLOAT_ARTIFACT: Artifact(
        "fixed_cache_onnx", {GRAPH: str(graph.relative_to(out))}, "streaming", CTC_MODES, True,
        f"export_rknn (static fixed-cache streaming graph, float32, opset {OPSET})",
        tolerance=dict(tolerance), parity=dict(parity))}
