"""Where would the X3 (bernoulli2) run each node: BPU or CPU, and which published constraint decided.

An estimate from the rules below, read from Horizon's X3 operator list (the "supported op list and
restrictions" chapter of the PTQ guide) and from WeNet's X3 recipe; the authority is
`hb_mapper checker` on a machine with the toolchain. Every CPU node is also classified:
*expected* when the rewrite puts it there by design (LayerNorm kept on the CPU, the attention
core, MoE routing, the input layout transpose), *unexpected* otherwise: an unexpected node splits
the BPU graph where nobody planned it, and should be fixed in the rewrite.

Nodes are found by op type and by the scope in their name (`/encoders.3/self_attn/...`, which the
exporter derives from module paths); no auto-generated name is ever hard-coded.
"""

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from ..cli import write_csv
from ..errors import EdgeAsrError
from .contract import MAX_CHANNELS, MAX_KERNEL

OP_LIST = "X3 op list"  # Horizon PTQ guide, supported op list and restrictions (bernoulli2 / XJ3)
WENET = "WeNet X3 recipe"  # wenet/bin/export_onnx_bpu.py and runtime/horizonbpu

MAX_PLAIN_CHANNELS = 4096  # X3 Conv without groups or dilation: channels per group <= 4096
MAX_KERNEL_VOLUME = 32768  # X3 Conv: kernel H x W x input channels per group
NEVER_ON_BPU = {"Cast", "Constant", "Dropout", "Reshape", "Squeeze", "Unsqueeze", "Shape"}
ELEMENTWISE = {"Add", "Sub", "Mul", "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "PRelu", "BatchNormalization"}
DATA_MOVEMENT = {"Concat", "Split", "Slice"}
CPU_FALLBACK = {  # op -> why it runs on the CPU
    "Transpose": f"{OP_LIST}: Transpose only for NCHW<->NHWC layout changes; others on CPU",
    "MatMul": f"{WENET}: MatMul of two feature maps (attention scores) runs on the CPU (attn_run_on_bpu=False)",
    "Softmax": f"{OP_LIST}: Softmax runs on the CPU by default",
    "Pow": "HORIZON.md / WeNet X3 recipe: Pow is a typical CPU fallback",
    "ReduceMean": f"{WENET}: LayerNorm reductions run on the CPU (ln_run_on_bpu=False)",
    "Sqrt": f"{OP_LIST}: no BPU kernel for Sqrt on bernoulli2",
    "Div": f"{OP_LIST}: no BPU kernel for Div of two feature maps on bernoulli2",
    "Erf": f"{OP_LIST}: no BPU kernel for Erf (GELU) on bernoulli2",
    "Equal": f"{OP_LIST}: comparisons run on the CPU",
    "Less": f"{OP_LIST}: comparisons run on the CPU",
    "Where": f"{OP_LIST}: Where runs on the CPU",
    "TopK": f"{OP_LIST}: TopK runs on the CPU",
    "Gather": f"{OP_LIST}: Gather runs on the CPU",
}
# Scopes where CPU nodes are there by design (checked against the node name).
LAYER_NORM = re.compile(r"/(norm\w*|after_norm)/")
ATTENTION_CORE = re.compile(r"/self_attn/(?!linear_)")
MOE_ROUTING = re.compile(r"/feed_forward\w*/(?!experts)")
EXPECTED_CPU_SCOPES = [
    (LAYER_NORM, "LayerNorm kept on the CPU (bpu.layer_norm_on_bpu decomposes it)"),
    (ATTENTION_CORE, "attention core: scores and softmax between feature maps"),
    (MOE_ROUTING, "MoE routing: top-k and softmax over the gate"),
]
# CPU islands: every node in them stays on the CPU in float, also the BPU-capable ones (they go to
# run_on_cpu). Otherwise hb_mapper quantizes e.g. the `var + eps` Add inside a CPU LayerNorm and
# small variances round to 0 (measured: the normalized output's cosine fell to 0.71).
ISLAND_REASON = "BPU-capable, kept in float on the CPU with the rest of its {} (run_on_cpu)"


@dataclass
class Placement:
    node: str
    op: str
    device: str  # BPU | CPU
    reason: str
    expected: Optional[bool]  # for CPU nodes: placed there by design; None on the BPU
    run_on_cpu: bool = False  # BPU-capable but kept on the CPU: listed in hb_mapper's run_on_cpu

    def as_row(self) -> Dict[str, str]:
        expected = "" if self.expected is None else ("expected" if self.expected else "UNEXPECTED")
        return {"node": self.node, "op": self.op, "device": self.device, "cpu": expected,
                "run_on_cpu": "yes" if self.run_on_cpu else "", "reason": self.reason}


def tensor_shapes(model: onnx.ModelProto) -> Dict[str, List[int]]:
    """Every tensor's static shape: inferred values, graph inputs/outputs and initializers."""
    inferred = shape_inference.infer_shapes(model)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shapes[value.name] = [d.dim_value for d in value.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def node_macs(model: onnx.ModelProto) -> Dict[str, int]:
    """Multiply-accumulates of one run of a static-shape graph, per Conv and MatMul node."""
    shapes = tensor_shapes(model)
    macs = {}
    for node in model.graph.node:
        if node.op_type == "Conv":
            out, weight = shapes[node.output[0]], shapes[node.input[1]]
            macs[node.name] = int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type == "MatMul":
            a, out = shapes[node.input[0]], shapes[node.output[0]]
            macs[node.name] = int(np.prod(out)) * a[-1]
    return macs


def _conv_reason(node: onnx.NodeProto, shapes: Dict[str, List[int]], weights: Dict[str, List[int]]) -> Optional[str]:
    """None when the conv fits the X3 limits, else the limit it breaks."""
    # A weight shared between convs reaches some of them through an Identity: use its inferred shape.
    out_ch, in_per_group, kh, kw = weights.get(node.input[1]) or shapes[node.input[1]]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    group = attrs.get("group", 1)
    dilations = attrs.get("dilations", [1, 1])
    if len(shapes.get(node.input[0], [])) != 4:
        return f"{OP_LIST}: Conv runs on the BPU for 4-D inputs only"
    if kh > MAX_KERNEL or kw > MAX_KERNEL:
        return f"{OP_LIST}: Conv kernel {kh}x{kw} > {MAX_KERNEL}x{MAX_KERNEL}"
    plain = group == 1 and all(d == 1 for d in dilations)
    limit = MAX_PLAIN_CHANNELS if plain else MAX_CHANNELS
    if in_per_group > limit or out_ch // group > limit:
        return f"{OP_LIST}: Conv channels {in_per_group} -> {out_ch // group} per group > {limit}"
    if kh * kw * in_per_group > MAX_KERNEL_VOLUME:
        return f"{OP_LIST}: Conv kernel volume {kh}x{kw}x{in_per_group} > {MAX_KERNEL_VOLUME}"
    if any(d & (d - 1) for d in dilations):
        return f"{OP_LIST}: Conv dilation {dilations} not a power of two"
    return None


def place_node(node: onnx.NodeProto, shapes: Dict[str, List[int]], weights: Dict[str, List[int]],
               layer_norm_on_bpu: bool = False) -> Placement:
    ranks = [len(shapes.get(name, [])) for name in node.input if name]
    if node.op_type == "Conv":
        why = _conv_reason(node, shapes, weights)
        device, reason = ("CPU", why) if why else ("BPU", f"{OP_LIST}: Conv within kernel <= 7x7, channel limits")
    elif node.op_type in NEVER_ON_BPU:
        device, reason = "CPU", f"{OP_LIST}: {node.op_type} cannot run on the BPU"
    elif node.op_type in ELEMENTWISE | DATA_MOVEMENT:
        if all(rank in (0, 1, 4) for rank in ranks) and 4 in ranks:
            device, reason = "BPU", f"{OP_LIST}: {node.op_type} on 4-D tensors"
        else:
            device, reason = "CPU", f"HORIZON.md: {node.op_type} on non-4-D tensors falls back to the CPU"
    else:
        device, reason = "CPU", CPU_FALLBACK.get(node.op_type, f"{OP_LIST}: {node.op_type} is not a BPU op")
    islands = [(ATTENTION_CORE, "attention core")] + ([] if layer_norm_on_bpu else [(LAYER_NORM, "LayerNorm")])
    island = next((name for pattern, name in islands if pattern.search(node.name)), None)
    if device == "BPU" and island is not None:
        return Placement(node.name, node.op_type, "CPU", ISLAND_REASON.format(island), True, run_on_cpu=True)
    expected = None
    if device == "CPU":
        expected, reason = _expected(node, reason)
    return Placement(node.name, node.op_type, device, reason, expected)


def _expected(node: onnx.NodeProto, reason: str):
    for pattern, why in EXPECTED_CPU_SCOPES:
        if pattern.search(node.name):
            return True, f"{reason} [by design: {why}]"
    if node.op_type == "Transpose" and node.input[0] == "chunk":
        return True, f"{reason} [by design: features (1, 1, W, F) -> (1, 1, F, W) at the input]"
    return False, reason


def placement_report(path) -> List[Placement]:
    """One Placement per compute node of the ONNX file (Constant / Identity nodes are not compute)."""
    model = onnx.load(str(path))
    shapes = tensor_shapes(model)
    weights = {init.name: list(numpy_helper.to_array(init).shape) for init in model.graph.initializer}
    meta = {p.key: p.value for p in model.metadata_props}
    layer_norm_on_bpu = meta.get("layer_norm_on_bpu") == "1"
    return [
        place_node(node, shapes, weights, layer_norm_on_bpu)
        for node in model.graph.node
        if node.op_type not in ("Constant", "Identity")
    ]


def placement_file(model: Path) -> Path:
    """Where export_bpu leaves a graph's placement report: beside it, `<graph>.placement.json`."""
    return model.with_name(model.stem + ".placement.json")


def write_placement(model: Path, report: Sequence[Placement]) -> None:
    placement_file(model).write_text(json.dumps([asdict(p) for p in report], indent=1) + "\n")


def read_placement(model: Path) -> List[Placement]:
    """The report export_bpu computed for `model` (computed once; later stages read it)."""
    path = placement_file(model)
    if not path.is_file():
        raise EdgeAsrError(f"{path}: not found (run `dvc repro export_bpu` first)")
    return [Placement(**entry) for entry in json.loads(path.read_text())]


def placement_summary(report: Sequence[Placement]) -> Dict[str, object]:
    """Counts by device and op; the unexpected CPU nodes by name."""
    by_op: Dict[str, Dict[str, int]] = {}
    for p in report:
        by_op.setdefault(p.op, {"BPU": 0, "CPU": 0})[p.device] += 1
    return {
        "nodes": len(report),
        "bpu": sum(p.device == "BPU" for p in report),
        "cpu": sum(p.device == "CPU" for p in report),
        "cpu_expected": sum(p.expected is True for p in report),
        "cpu_unexpected": sum(p.expected is False for p in report),
        "run_on_cpu": sum(p.run_on_cpu for p in report),
        "unexpected_nodes": [p.node for p in report if p.expected is False],
        "by_op": dict(sorted(by_op.items())),
    }


PLACEMENT_COLUMNS = ["graph", "node", "op", "device", "cpu", "run_on_cpu", "reason"]


def write_table(path: Path, reports: Mapping[str, Sequence[Placement]]) -> None:
    """The per-node table (PLACEMENT_COLUMNS) as CSV."""
    write_csv(path, PLACEMENT_COLUMNS,
              ({"graph": graph, **p.as_row()} for graph, report in reports.items() for p in report))
