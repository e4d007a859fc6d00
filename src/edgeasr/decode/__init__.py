"""Decoding over a backend-neutral interface: PyTorch (`backend`), onnxruntime over the exported graphs
(`onnx_backend`: cpu, gpu, sherpa; `bpu_backend`: the X3 graphs, float or quantized, or any runner of
them), one streaming driver and the searches."""

from ..model.subsampling import Geometry
from .backend import Backend, TorchBackend
from .recognizer import MODES, DecodeOptions, Recognition, recognize
from .search import attention_rescoring, ctc_greedy_search, ctc_prefix_beam_search
from .streaming import chunk_windows, stream_encode

__all__ = [
    "MODES",
    "Recognition",
    "Backend",
    "DecodeOptions",
    "Geometry",
    "TorchBackend",
    "attention_rescoring",
    "chunk_windows",
    "ctc_greedy_search",
    "ctc_prefix_beam_search",
    "recognize",
    "stream_encode",
]
