"""The compiled RK3588 graph in rknn-toolkit2's x86 simulator, as a fixed-cache streaming backend.

The simulator runs only a model built in its own session (rknn-toolkit2 2.5.0, load_rknn() then
init_runtime() with no target: "RKNN model that loaded by 'load_rknn' not support inference on the
simulator"), so it rebuilds from what compile_rknn compiled, as its manifest lists it: the same ONNX
graphs, dataset lists and rknn.config(). NOTE: two builds of the same inputs are not byte-identical
files (1294 of 31116 bytes differed between two consecutive builds of the demo's CTC graph), so the
check is numerical: the simulated outputs' cosine to the float graphs, reported beside the CER. The
models are fed chunk by chunk with real caches exactly like the X3 graphs (decode.bpu_backend,
`exact` protocol). Its speed is an x86 emulation's, never the chip's. Like every artifact it runs on
the evaluation engine: each worker starts its own simulator (and so rebuilds the model once).
"""

import functools
import itertools
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict

from ..artifact.manifest import Artifact
from ..artifact.onnx_io import graph_inputs
from ..decode.fixed_cache_backend import FixedCacheBackend
from ..evaluate.backends import Opener
from .export import GRAPH
from .toolkit import Simulator, find_python

_STARTED = itertools.count(1)  # simulators this process started


def simulator_job(artifact: Artifact, folder: Path) -> Dict[str, Any]:
    """The serve job: the graph with the dataset list it was compiled from (absolute paths), and the
    tensors hybrid quantization keeps in float16 (none: all INT8)."""
    return {"config": dict(artifact.options["config"]), "models": {
        GRAPH: {"onnx": str(artifact.path(folder, f"{GRAPH}_onnx").resolve()),
                "dataset": str(artifact.path(folder, f"{GRAPH}_dataset").resolve()),
                "float16_tensors": list(artifact.options.get("float16_tensors", []))}}}


def open_simulated(python: str, log_dir: str, artifact: Artifact, folder: Path, threads: int,
                   stack: ExitStack) -> FixedCacheBackend:
    """An `evaluate.backends` opener for `rknn_simulator` entries, run wherever the shard runs (a Dask
    worker or the stage itself): starts a simulator there (closed with `stack`) and returns the
    fixed-cache streaming backend with the graph run by it.

    python: the toolkit's Python the stage found; a worker where that path does not exist (another
    machine) looks for its own (rknn.toolkit_python's fallbacks: $EDGEASR_RKNN_PYTHON, .venv-rknn).
    log_dir: the stage's log folder; where it does not exist (another machine) the log stays in a
    temporary folder, and any failure carries its tail."""
    here = Path(python) if Path(python).is_file() else find_python(None)
    logs = Path(log_dir) if Path(log_dir).is_dir() else Path(stack.enter_context(
        tempfile.TemporaryDirectory(prefix="edgeasr-rknn-logs-")))
    # NOTE: one log per simulator, not per process: a process keeps up to two backends open
    # (evaluate.shards.MAX_OPEN_BACKENDS), and a second simulator would truncate the first one's log.
    name = f"simulator-{os.getpid()}-{next(_STARTED)}"
    simulator = stack.enter_context(Simulator(here, simulator_job(artifact, folder), logs / f"{name}.job.json",
                                              logs / f"{name}.log"))
    onnx = artifact.path(folder, f"{GRAPH}_onnx")
    return FixedCacheBackend(onnx, threads, runner=simulator.session(GRAPH, [n for n, _ in graph_inputs(onnx)]))


def simulator_opener(python: Path, logs: Path) -> Opener:
    """The opener the engine packs with the `rknn_simulator` artifact (a picklable partial)."""
    return functools.partial(open_simulated, str(python.absolute()), str(logs.absolute()))
