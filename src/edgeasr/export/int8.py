"""The cpu family's INT8 copies (`*.int8.onnx`): onnxruntime dynamic quantization with settings that
load in the onnxruntime WeNet's C++ runtime pins (1.13.1, 1.14.0) as well as the current release.

Dynamic quantization turns a weight into an INT8 initializer and the activation into uint8 at run
time (DynamicQuantizeLinear), so each quantized Conv becomes ConvInteger(uint8, weight type) and
each MatMul MatMulInteger(uint8, weight type). NOTE: onnxruntime 1.13.1's CPU kernels, probed with
one-node graphs (2026-12-02, `ORT_1_13_CPU_KERNELS`), have ConvInteger for (uint8, uint8) only, so
int8 Conv weights do not load there ("Could not find an implementation for ConvInteger(10)"), and
WeNet's decoder_main then exits 0 with an empty result. Hence uint8 weights (WeNet's own exporter
quantizes with QuantType.QUInt8 too); the CER of each choice is in docs/runtimes.md.
"""

from pathlib import Path
from typing import Dict, FrozenSet, List, Tuple

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

QUANT_TYPE = QuantType.QUInt8  # weights: loads in onnxruntime 1.13 (ConvInteger u8 x u8)
SETTINGS = "dynamic INT8, uint8 weights, every MatMul and Conv"  # what the metadata says it holds
# (activation type, weight type) pairs onnxruntime 1.13.1's CPU provider implements, per op.
ORT_1_13_CPU_KERNELS: Dict[str, FrozenSet[Tuple[str, str]]] = {
    "ConvInteger": frozenset({("uint8", "uint8")}),
    "MatMulInteger": frozenset({("uint8", "uint8"), ("uint8", "int8"), ("int8", "int8")}),
}


def quantize_int8(float_path: Path, out_path: Path) -> None:
    """`float_path` -> its INT8 copy at `out_path` (SETTINGS)."""
    quantize_dynamic(str(float_path), str(out_path), weight_type=QUANT_TYPE)


def _elem_types(model: onnx.ModelProto) -> Dict[str, str]:
    """Tensor name -> element type name (lower case) for every typed tensor of the graph."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {init.name: onnx.TensorProto.DataType.Name(init.data_type).lower() for init in graph.initializer}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        if info.type.HasField("tensor_type"):
            types[info.name] = onnx.TensorProto.DataType.Name(info.type.tensor_type.elem_type).lower()
    return types


def missing_ort_1_13_kernels(path: Path) -> List[str]:
    """Nodes of the graph at `path` that onnxruntime 1.13.1's CPU provider has no kernel for
    (`op name (activation, weight)` each); empty when the graph loads there."""
    model = onnx.load(str(path))
    types = _elem_types(model)
    missing = []
    for node in model.graph.node:
        allowed = ORT_1_13_CPU_KERNELS.get(node.op_type)
        if allowed is None:
            continue
        pair = (types.get(node.input[0], "?"), types.get(node.input[1], "?"))
        if pair not in allowed:
            missing.append(f"{node.op_type} {node.name} {pair}")
    return missing
