"""WeNet-compatible model library: encoders, decoders, CTC and checkpoint loading.

Entry point: `load_model(model_dir) -> LoadedModel(model, config, symbol_table)`.
"""

from .asr_model import ASRModel
from .checkpoint import LoadedModel, build_model, load_model
from .config import ModelSpec

__all__ = ["ASRModel", "LoadedModel", "ModelSpec", "build_model", "load_model"]
