"""The X3 graphs' INT8 nodes grouped by module scope, the unit the sensitivity table and the
float-set search work in.

Groups are read from the node names the exporter keeps (`/encoders.3/self_attn/linear_q/MatMul`
-> `encoders.3.self_attn`): the subsampling convs (`embed`); per block its macaron FFN, attention,
conv module, FFN (an MoE FFN with its gate and experts), residual adds (`encoders.N.residual`) and
norms where they run on the BPU; the cache slicing and concatenation at the graph's edges
(`cache_io`); the CTC head (`ctc`).
"""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

from onnxruntime.quantization.calibrate import TensorsData


def node_group(graph: str, node: str) -> str:
    """The readable module scope a node belongs to (see the module docstring)."""
    if graph == "ctc":
        return "ctc"
    parts = node.strip("/").split("/")
    head = parts[0]
    if head.startswith("encoders."):
        return f"{head}.{parts[1]}" if len(parts) > 2 else f"{head}.residual"
    if head == "embed" and len(parts) > 1:
        return "embed"
    if head == "ctc_lo":  # the CTC head inside a one-graph export (the RK3588's fixed-cache graph)
        return "ctc"
    return "cache_io"


@dataclass(frozen=True)
class QuantGraph:
    """One X3 graph with its INT8 candidates and their ranges (computed once)."""

    name: str  # encoder | ctc
    float_model: Path
    bpu_nodes: Tuple[str, ...]  # the nodes quantized when nothing is kept in float
    ranges: TensorsData
    per_channel: bool

    @cached_property
    def groups(self) -> Dict[str, List[str]]:
        """group -> its nodes, in graph order."""
        out: Dict[str, List[str]] = {}
        for node in self.bpu_nodes:
            out.setdefault(node_group(self.name, node), []).append(node)
        return out

    def nodes_in(self, groups: Iterable[str]) -> List[str]:
        """The nodes of `groups` (those of other graphs are ignored), in graph order."""
        chosen = set(groups)
        return [n for n in self.bpu_nodes if node_group(self.name, n) in chosen]
