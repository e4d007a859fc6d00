"""Every exported file carries its own geometry in metadata_props; later stages read it back.

Keys follow WeNet's exporter (read by WeNet's onnxruntime runtime) plus sherpa-onnx's names.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Sequence, Tuple

import onnx

from ..errors import EdgeAsrError
from ..model.asr_model import ASRModel
from ..model.subsampling import Geometry, decoding_window


@dataclass(frozen=True)
class StreamGeometry:
    """The streaming facts an exported encoder carries (written by `model_geometry`, read back by
    every backend that drives an exported graph)."""

    input: Geometry  # subsampling rate, right context, feature dimension
    chunk_size: int  # encoder frames per chunk
    num_left_chunks: int  # cached chunks of left context (-1: unlimited)
    decoding_window: int  # feature frames of one chunk's input window

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> "StreamGeometry":
        geometry = Geometry(int(meta["subsampling_rate"]), int(meta["right_context"]), int(meta["feature_size"]))
        return cls(geometry, int(meta["chunk_size"]), int(meta["left_chunks"]), int(meta["decoding_window"]))


def check_streamed_as_exported(graph: str, exported: Tuple[int, int], asked: Tuple[int, int]) -> None:
    """A fixed-cache graph runs only at the (chunk, left chunks) it was exported for."""
    if tuple(asked) != tuple(exported):
        raise ValueError(f"{graph} was exported for chunk {exported[0]} / left {exported[1]}, "
                         f"asked for {asked[0]} / {asked[1]}")


def model_geometry(model: ASRModel, chunk_size: int, num_left_chunks: int) -> Dict[str, object]:
    """The facts a runtime needs to drive the model, from the model itself."""
    enc = model.encoder
    first = enc.encoders[0]
    conv = getattr(first, "conv_module", None)
    kernel = conv.depthwise_conv.kernel_size[0] if conv is not None else 1
    embed = enc.embed
    window = decoding_window(chunk_size, embed.subsampling_rate, embed.right_context)
    decoder_type = {"BiTransformerDecoder": "bitransformer", "TransformerDecoder": "transformer"}.get(
        type(model.decoder).__name__, "none"
    )
    return {
        "encoder": "conformer" if conv is not None or hasattr(first, "norm_mha") else "transformer",
        "decoder": decoder_type,
        "output_size": enc.output_size(),
        "num_blocks": len(enc.encoders),
        "head": enc.attention_heads,
        "cnn_module_kernel": kernel,
        "subsampling_rate": embed.subsampling_rate,
        "subsampling_factor": embed.subsampling_rate,  # sherpa-onnx's name for the same number
        "right_context": embed.right_context,
        "feature_size": enc.input_size,
        "vocab_size": model.vocab_size,
        "sos_symbol": model.sos,
        "eos_symbol": model.eos,
        "is_bidirectional_decoder": int(decoder_type == "bitransformer"),
        "chunk_size": chunk_size,
        "left_chunks": num_left_chunks,  # the key WeNet's runtimes read
        "decoding_window": window,
        "batch": 1,
    }


def write_metadata(path: Path, meta: Mapping[str, object]) -> None:
    """Add (or replace) metadata_props on a saved ONNX file."""
    proto = onnx.load(str(path))
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in meta.items():
        prop = existing.get(key) or proto.metadata_props.add()
        prop.key, prop.value = str(key), str(value)
    onnx.save(proto, str(path))


def read_metadata(path: Path, model_types: Sequence[str] = ()) -> Dict[str, str]:
    """The file's metadata_props; with `model_types`, the contract a runtime asserts before it drives
    the graph: a file exported for another runtime (its inputs, caches and outputs differ) is refused."""
    proto = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    if model_types and meta.get("model_type") not in model_types:
        raise EdgeAsrError(f"{path}: model_type {meta.get('model_type')!r}, expected {' or '.join(model_types)} "
                           "(a graph exported for another runtime)")
    return meta
