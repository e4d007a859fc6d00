"""sherpa/: one streaming model (encoder + CTC log-softmax) and tokens.txt that
`sherpa_onnx.OnlineRecognizer.from_wenet_ctc` loads unchanged.

sherpa-onnx feeds six inputs by position (x, offset (1,), required_cache_size (1,), attn_cache,
conv_cache, attn_mask), starts `offset` at chunk * num_left_chunks, and reads head, num_blocks,
output_size, cnn_module_kernel, right_context, subsampling_factor and vocab_size from metadata,
with model_type = wenet_ctc.

NOTE: WeNet's runtime starts `offset` at 0 (the frames decoded so far), and so do training and
PyTorch's forward_chunk_by_chunk. sherpa-onnx starts it at the cache size C = chunk * left, and
sherpa-onnx's own WeNet export (scripts/wenet/export-onnx-streaming.py) passes it on unchanged,
which puts every frame C positions later than the model was trained with. A no_pos model never
reads it; a rel_pos one does (the U2++ demo, run 4: CER +4.82 against PyTorch before, +0.65
after). The graph subtracts `required_cache_size` first, so sherpa-onnx computes the positions
PyTorch does.
"""

import shutil
from pathlib import Path
from typing import Dict

import torch

from ..artifact.metadata import model_geometry, write_metadata
from ..artifact.onnx_io import export_graph
from ..errors import EdgeAsrError
from ..frontend.datalist import read_symbol_table
from ..model.asr_model import ASRModel
from .cpu import streaming_example_inputs
from .graphs import StreamingEncoder, moe_form, moe_metadata


class SherpaStreamingModel(torch.nn.Module):
    """x (1, W, F), offset (1,), required_cache_size (1,), attn_cache (L, h, C, 2*d_k),
    conv_cache (L, 1, D, K-1), attn_mask (1, 1, C + chunk) -> log_probs (1, chunk, V), caches."""

    def __init__(self, model: ASRModel):
        super().__init__()
        self.encoder = StreamingEncoder(model, keep_all_inputs=True)
        self.ctc = model.ctc
        conv = getattr(model.encoder.encoders[0], "conv_module", None)
        self.has_conv_cache = conv is not None and conv.lorder > 0

    def forward(self, x, offset, required_cache_size, attn_cache, conv_cache, attn_mask):
        frames_done = offset - required_cache_size  # sherpa-onnx's offset -> WeNet's (module NOTE)
        out, new_attn_cache, new_conv_cache = self.encoder(x, frames_done, required_cache_size, attn_cache, conv_cache,
                                                           attn_mask)
        if not self.has_conv_cache:
            # sherpa-onnx feeds six inputs by position: an unread conv_cache passes through unchanged
            # so that the input stays in the graph.
            new_conv_cache = conv_cache
        return self.ctc.log_softmax(out), new_attn_cache, new_conv_cache


def export_sherpa(model: ASRModel, units: Path, out_dir: Path, chunk_size: int, num_left_chunks: int,
                  opset: int = 13, moe: str = "sparse") -> Dict[str, Path]:
    if num_left_chunks <= 0:
        raise EdgeAsrError(
            f"streaming.num_decoding_left_chunks: sherpa-onnx's WeNet runtime needs a fixed cache (> 0), got {num_left_chunks}"
        )
    if read_symbol_table(units).get("<blank>") != 0:
        # sherpa-onnx exits the process (not an exception) when tokens.txt lacks it.
        raise EdgeAsrError(f"{units}: sherpa-onnx needs '<blank> 0' in tokens.txt")
    chunk, offset, required, att_cache, cnn_cache, att_mask = streaming_example_inputs(model, chunk_size, num_left_chunks)
    meta = {**model_geometry(model, chunk_size, num_left_chunks), **moe_metadata(model, moe)}
    # sherpa-onnx sizes conv_cache from metadata (cnn_module_kernel - 1) whether or not it is read.
    cnn_cache = torch.zeros(cnn_cache.size(0), 1, cnn_cache.size(2), int(meta["cnn_module_kernel"]) - 1)
    path = out_dir / "model.onnx"
    with moe_form(model, moe):
        export_graph(
            SherpaStreamingModel(model),
            (chunk, offset.reshape(1), required.reshape(1), att_cache, cnn_cache, att_mask),
            path,
            ["x", "offset", "required_cache_size", "attn_cache", "conv_cache", "attn_mask"],
            ["log_probs", "new_attn_cache", "new_conv_cache"],
            {"x": {1: "T"}, "log_probs": {1: "T"}},
            opset,
        )
    write_metadata(path, {**meta, "model_type": "wenet_ctc", "version": "1", "opset": opset,
                          "num_left_chunks": num_left_chunks})
    tokens = out_dir / "tokens.txt"
    shutil.copy(units, tokens)
    return {"model": path, "tokens": tokens}
