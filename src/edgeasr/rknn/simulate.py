"""The compiled RK3588 graph in rknn-toolkit2's x86 simulator, as a fixed-cache streaming backend.

The simulator runs only a model built in its own session (rknn-toolkit2 2.5.0, load_rknn() then
init_runtime() with no target: "RKNN model that loaded by 'load_rknn' not support inference on the
simulator"), so it rebuilds from what compile_rknn compiled, as its manifest lists it: the same ONNX
graphs, dataset lists and rknn.config(). NOTE: two builds of the same inputs are not byte-identical
files (1294 of 31116 bytes differed between two consecutive builds of the demo's CTC graph), so the
check is numerical: the simulated outputs' cosine to the float graphs, reported beside the CER. The
models are fed chunk by chunk with real caches exactly like the X3 graphs (decode.bpu_backend,
`exact` protocol). Its speed is an x86 emulation's, never the chip's.
"""

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict

from ..artifact.manifest import Artifact
from ..artifact.onnx_io import graph_inputs
from ..decode.fixed_cache_backend import FixedCacheBackend
from .export import GRAPH
from .toolkit import Simulator


def simulator_job(artifact: Artifact, folder: Path) -> Dict[str, Any]:
    """The serve job: the graph with the dataset list it was compiled from (absolute paths)."""
    return {"config": dict(artifact.options["config"]), "models": {
        GRAPH: {"onnx": str(artifact.path(folder, f"{GRAPH}_onnx").resolve()),
                "dataset": str(artifact.path(folder, f"{GRAPH}_dataset").resolve())}}}


def simulator_opener(python: Path, logs: Path):
    """An `evaluate.backends` opener for `rknn_simulator` entries: starts the simulator (closed with the
    caller's stack) and returns the fixed-cache streaming backend with the graph run by it."""
    def open_simulated(artifact: Artifact, folder: Path, threads: int, stack: ExitStack) -> FixedCacheBackend:
        simulator = stack.enter_context(Simulator(python, simulator_job(artifact, folder), logs / "job.json",
                                                  logs / "simulator.log"))
        onnx = artifact.path(folder, f"{GRAPH}_onnx")
        runner = simulator.session(GRAPH, [name for name, _ in graph_inputs(onnx)])
        return FixedCacheBackend(onnx, threads, runner=runner)
    return open_simulated
