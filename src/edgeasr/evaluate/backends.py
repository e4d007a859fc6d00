"""One factory: a manifest entry -> the backend (or audio recognizer) that runs it.

Evaluation code never spells an artifact's file name: it asks the manifest entry for the file of a
role (`Artifact.path`). Backends that need a process of their own (rknn-toolkit2's simulator) are
opened by an opener the caller passes, and closed with the caller's ExitStack.
"""

from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

import torch

from ..artifact.manifest import ALL_MODES, Artifact
from ..artifact.metadata import read_metadata
from ..decode import Backend, TorchBackend
from ..decode.bpu_backend import OnnxBpuBackend
from ..decode.fixed_cache_backend import MODEL_TYPE as FIXED_CACHE, FixedCacheBackend
from ..decode.onnx_backend import OnnxCpuBackend, OnnxGpuBackend
from ..errors import EdgeAsrError
from ..model import load_model
from .sherpa import SherpaRecognizer

Runnable = Union[Backend, SherpaRecognizer]
# (artifact, its folder, threads, the stack that closes what it starts) -> what runs it
Opener = Callable[[Artifact, Path, int, ExitStack], Runnable]


def _optional(artifact: Artifact, folder: Path, role: str) -> Optional[Path]:
    return artifact.path(folder, role) if role in artifact.files else None


def _torch(artifact: Artifact, folder: Path, threads: int, _: ExitStack) -> Runnable:
    """A WeNet model directory (the reference): edgeasr's PyTorch model, eager."""
    torch.set_num_threads(threads)
    model, _, _ = load_model(folder)
    return TorchBackend(model)


def model_artifact(model_dir: Path) -> Artifact:
    """A WeNet model directory as an artifact every engine can ship: each file beside train.yaml."""
    files = {path.name: path.name for path in sorted(model_dir.iterdir()) if path.is_file()}
    return Artifact("torch", files, "full", ALL_MODES, True, "PyTorch (edgeasr's WeNet-compatible model)")


def _onnx_cpu(artifact: Artifact, folder: Path, threads: int, _: ExitStack) -> Runnable:
    return OnnxCpuBackend(artifact.path(folder, "encoder"), artifact.path(folder, "ctc"),
                          _optional(artifact, folder, "decoder"), threads)


def _onnx_gpu(artifact: Artifact, folder: Path, threads: int, _: ExitStack) -> Runnable:
    return OnnxGpuBackend(_optional(artifact, folder, "encoder"), _optional(artifact, folder, "streaming_encoder"),
                          _optional(artifact, folder, "decoder"), threads)


def _x3_onnx(artifact: Artifact, folder: Path, threads: int, _: ExitStack) -> Runnable:
    return OnnxBpuBackend(artifact.path(folder, "encoder"), artifact.path(folder, "ctc"),
                          artifact.options.get("protocol", "exact"), threads)


def _fixed_cache(artifact: Artifact, folder: Path, threads: int, _: ExitStack) -> Runnable:
    return FixedCacheBackend(artifact.path(folder, "encoder"), threads)


def _sherpa(artifact: Artifact, folder: Path, threads: int, _: ExitStack) -> Runnable:
    options = artifact.options
    return SherpaRecognizer(artifact.path(folder, "model"), artifact.path(folder, "tokens"), int(options["chunk_size"]),
                            int(options["num_left_chunks"]), threads, wenet_frontend=bool(options["wenet_frontend"]))


OPENERS: Mapping[str, Opener] = {"torch": _torch, "onnx_cpu": _onnx_cpu, "onnx_gpu": _onnx_gpu, "x3_onnx": _x3_onnx,
                                 "fixed_cache_onnx": _fixed_cache, "sherpa_onnx": _sherpa}


def open_backend(artifact: Artifact, folder: Path, threads: int, stack: ExitStack,
                 openers: Optional[Mapping[str, Opener]] = None) -> Runnable:
    """What runs `artifact` at `threads` intra-op threads; `openers` adds backends of a higher layer."""
    available = {**OPENERS, **(openers or {})}
    if not artifact.runnable:
        raise EdgeAsrError(f"{folder}: {artifact.backend} is not runnable here ({artifact.reason})")
    if artifact.backend not in available:
        raise EdgeAsrError(f"{folder}: no opener for backend {artifact.backend!r} in this stage "
                           f"(has: {', '.join(sorted(available))})")
    return available[artifact.backend](artifact, folder, threads, stack)


def float_graphs(artifact: Artifact, folder: Path, threads: int) -> Optional[Backend]:
    """The float graphs a quantized artifact is compared with (`cosine_to`), or None: the X3 pair, or
    the RK3588's fixed-cache graph (its metadata says which)."""
    if artifact.cosine_to is None:
        return None
    files = {role: folder / path for role, path in artifact.cosine_to.items()}
    for path in files.values():
        if not path.is_file():
            raise EdgeAsrError(f"{path}: the float graph {folder} compares with is missing")
    if read_metadata(files["encoder"]).get("model_type") == FIXED_CACHE:
        return FixedCacheBackend(files["encoder"], threads)
    return OnnxBpuBackend(files["encoder"], files["ctc"], "exact", threads)
