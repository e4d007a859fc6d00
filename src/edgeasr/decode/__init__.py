"""Decoding over a backend-neutral interface (PyTorch here; onnxruntime backends plug in the same way)."""

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
