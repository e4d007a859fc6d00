"""Emulated X3 INT8: the BPU nodes of a graph quantized with given ranges, and float-vs-quantized
cosine per node.

hb_mapper quantizes the nodes the BPU runs to symmetric INT8 and leaves CPU nodes in float. The
emulation does the same: static QDQ, symmetric activations and weights, only the nodes it is given
(the placement report's BPU nodes minus `run_on_cpu`). The ranges come from `bpu.ranges`, computed
once per graph and applied to any subset of its nodes: the sensitivity study and the float-set
search quantize many subsets.
"""

from pathlib import Path
from typing import Iterable, List, Mapping, Sequence, Set, Tuple

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType
from onnxruntime.quantization.calibrate import TensorsData
from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

from ..errors import EdgeAsrError
from ..similarity import PooledCosine

PER_AXIS_OPSET = 13  # the first opset whose DequantizeLinear takes an axis (per-channel scales)


def write_qdq(model: Path, ranges: TensorsData, nodes: Sequence[str], per_channel: bool, out: Path) -> Path:
    """Static symmetric INT8 QDQ of `nodes` only, with ranges computed beforehand; every other node
    stays float. The same ranges serve any subset of the nodes they were computed for."""
    proto = onnx.load(str(model))
    chosen = set(nodes)
    op_types = sorted({n.op_type for n in proto.graph.node if n.name in chosen})
    loaded = load_model_with_shape_infer(model)
    quantizer = QDQQuantizer(
        per_channel_ready(loaded) if per_channel else loaded, per_channel, False, QuantType.QInt8, QuantType.QInt8, ranges,
        list(nodes), [], op_types,
        {"ActivationSymmetric": True, "WeightSymmetric": True, "ForceQuantizeNoInputCheck": True},
    )
    quantizer.quantize_model()
    out.parent.mkdir(parents=True, exist_ok=True)
    quantizer.model.save_model_to_file(str(out))
    return out


def per_channel_ready(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model at opset >= PER_AXIS_OPSET, converted by onnx's version converter if older.

    NOTE: a per-channel weight scale is a DequantizeLinear with an `axis`, which ONNX has only from
    opset 13; the X3 graphs are opset 11 (hb_mapper's input) and onnxruntime refuses the QDQ model
    ("Unrecognized attribute: axis"). Only the emulation's copy is converted; node and tensor names
    stay, so the same ranges and node lists apply."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset >= PER_AXIS_OPSET:
        return model
    return onnx.shape_inference.infer_shapes(onnx.version_converter.convert_version(model, PER_AXIS_OPSET))


def node_op_types(model: Path, nodes: Sequence[str]) -> List[str]:
    chosen = set(nodes)
    return sorted({n.op_type for n in onnx.load(str(model)).graph.node if n.name in chosen})


def with_all_outputs(model: onnx.ModelProto, names: Iterable[str]) -> bytes:
    """The model serialized with `names` added as float graph outputs (for per-node comparison)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    existing = {o.name for o in copy.graph.output}
    for name in names:
        if name not in existing:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return copy.SerializeToString()


def plain_session(model: bytes) -> ort.InferenceSession:
    """No graph optimizations: QDQ stays simulated and every intermediate tensor keeps its name."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def float_outputs(model: onnx.ModelProto) -> List[Tuple[str, str, str]]:
    """(node name, op type, output tensor) for every float output of a compute node."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    return [
        (node.name, node.op_type, out)
        for node in model.graph.node
        if node.op_type not in ("Constant", "Identity")
        for out in node.output[:1]
        if types.get(out) == onnx.TensorProto.FLOAT
    ]


def node_cosines(float_model: Path, quant_model: Path, samples: Sequence[Mapping[str, np.ndarray]],
                 quantized: Set[str]) -> List[dict]:
    """Cosine similarity of every node's output, float vs quantized, over `samples` (the value the next
    node sees: after Quantize/Dequantize where the emulation quantized it). Entries that are not
    finite in both (masked attention scores are -inf) are left out."""
    base = onnx.load(str(float_model))
    quant = onnx.load(str(quant_model))
    nodes = float_outputs(base)
    quant_tensors = {o for n in quant.graph.node for o in n.output}
    seen = {out: (f"{out}_DequantizeLinear_Output" if f"{out}_DequantizeLinear_Output" in quant_tensors else out)
            for _, _, out in nodes}
    missing = [out for out, name in seen.items() if name not in quant_tensors]
    if missing:
        raise EdgeAsrError(f"{quant_model}: tensor {missing[0]} of the float model is not in the quantized one")
    float_session = plain_session(with_all_outputs(base, seen))
    quant_session = plain_session(with_all_outputs(quant, seen.values()))
    float_names = [o.name for o in float_session.get_outputs()]
    quant_names = [o.name for o in quant_session.get_outputs()]
    pooled = {out: PooledCosine() for out in seen}
    for sample in samples:
        f = dict(zip(float_names, float_session.run(None, dict(sample))))
        q = dict(zip(quant_names, quant_session.run(None, dict(sample))))
        for out, name in seen.items():
            pooled[out].add(f[out], q[name])
    return [{"node": node, "op": op, "int8": node in quantized, "cosine": round(pooled[out].value(), 6)}
            for node, op, out in nodes]


def output_cosine(float_model: Path, quant_model: Path, sample: Mapping[str, np.ndarray]) -> float:
    """Cosine of the first graph output, float vs quantized, on one sample."""
    a = plain_session(onnx.load(str(float_model)).SerializeToString()).run(None, dict(sample))[0]
    b = plain_session(onnx.load(str(quant_model)).SerializeToString()).run(None, dict(sample))[0]
    pooled = PooledCosine()
    pooled.add(a, b)
    return pooled.value()
