"""The compiled RK3588 models in rknn-toolkit2's x86 simulator, as an X3-protocol streaming backend.

The simulator runs only a model built in its own session (rknn-toolkit2 2.5.0, load_rknn() then
init_runtime() with no target: "RKNN model that loaded by 'load_rknn' not support inference on the
simulator"), so it rebuilds from what compile_rknn compiled: the same ONNX graphs, dataset
list and rknn.config(). NOTE: two builds of the same inputs are not byte-identical files (1294 of
31116 bytes differed between two consecutive builds of the demo's CTC graph), so the check is
numerical: the simulated outputs' cosine to the float graphs, reported beside the CER. The models
are fed chunk by chunk with real caches exactly like the X3 graphs (decode.bpu_backend, `exact`
protocol). Its speed is an x86 emulation's, never the chip's.
"""

from pathlib import Path
from typing import Any, Dict, Mapping

from ..artifact.onnx_io import graph_inputs
from ..decode.bpu_backend import OnnxBpuBackend
from .compile import MODELS
from .toolkit import Simulator, rknn_config


def simulator_job(npu: Mapping[str, Any], graphs: Path, compiled: Path) -> Dict[str, Any]:
    """The serve job: each graph with the dataset list it was compiled from."""
    return {"config": rknn_config(npu), "models": {
        model: {"onnx": str((graphs / f"{model}.onnx").resolve()),
                "dataset": str((compiled / "dataset" / f"{model}.txt").resolve())}
        for model in MODELS}}


def simulator_backend(simulator: Simulator, graphs: Path) -> OnnxBpuBackend:
    """The X3 streaming backend with both graphs run by the simulator."""
    sessions = tuple(simulator.session(model, [name for name, _ in graph_inputs(graphs / f"{model}.onnx")])
                     for model in MODELS)
    return OnnxBpuBackend(graphs / "encoder.onnx", graphs / "ctc.onnx", "exact", sessions=sessions)
