"""Tracing to ONNX and opening sessions, with the settings every exporter shares."""

from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import onnx
import onnxruntime as ort
import torch
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from ..errors import EdgeAsrError


@contextmanager
def traced_in_eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Every submodule in eval mode while tracing, each restored to its own mode afterwards.

    NOTE: torch.onnx.export restores only the top module's flag, with `train(flag)`, which recurses:
    a wrapper built in training mode (every new Module is) would leave the caller's model with
    dropout on. Flags are saved per module instead."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def default_opset(proto: onnx.ModelProto) -> int:
    """The version of the default (ai.onnx) operator set a graph imports."""
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def export_graph(
    module: torch.nn.Module,
    args: Tuple,
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Dict[str, Dict[int, str]],
    opset: int,
    optional_inputs: Sequence[str] = (),
) -> None:
    """TorchScript-based export (dynamo=False: the dynamo exporter ignores opset_version and keeps
    data-dependent shapes); node names keep the module path, e.g. /encoder/encoders.3/self_attn/...
    A declared input the graph does not use is an error unless listed in `optional_inputs`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), traced_in_eval_mode(module):
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    got = default_opset(proto)
    if got != opset:
        raise EdgeAsrError(f"{path}: exported with opset {got}, expected {opset}")
    missing = set(input_names) - set(optional_inputs) - {i.name for i in proto.graph.input}
    if missing:
        raise EdgeAsrError(f"{path}: inputs {sorted(missing)} were dropped by the exporter")
    onnx.checker.check_model(proto)


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with `threads` intra-op threads (1 for real-time-factor measurements)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except (RuntimeError, ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph,
            ort_errors.NoSuchFile, ort_errors.NotImplemented) as exc:
        # NOTE: a file an edgeasr stage wrote is checked against its manifest's digest first; this is
        # for everything else (a graph given by hand, or one no runtime kernel implements).
        raise EdgeAsrError(f"{path}: onnxruntime {ort.__version__} cannot load it "
                           f"({str(exc).splitlines()[0][:300]})") from None


def graph_inputs(path: Path) -> List[Tuple[str, List[int]]]:
    """(name, shape) of each graph input that is not a weight, in the graph's order (0 = a dynamic axis)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {w.name for w in graph.initializer}
    return [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in graph.input if i.name not in weights]
