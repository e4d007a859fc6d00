"""The X3's `run_on_cpu` policy: which nodes hb_mapper must keep in float on the CPU.

Two sources, merged per graph: the placement report's CPU islands (whole LayerNorms and attention
cores, `bpu.float_islands`), and the user's rules (`bpu.run_on_cpu`: an op type and a regex on the
node's scope), resolved to the node names of the graphs at hand, never hard-coded.
"""

import re
from typing import Dict, Iterable, List, Mapping, Sequence

from ..errors import EdgeAsrError
from .placement import Placement


def nodes_matching(report: Iterable[Placement], op: str, scope: str) -> List[str]:
    """Node names of type `op` whose name matches the regex `scope` (e.g. `^/embed/conv/conv\\.0/`)."""
    pattern = re.compile(scope)
    return [p.node for p in report if p.op == op and pattern.search(p.node)]


def resolve_run_on_cpu(reports: Mapping[str, Sequence[Placement]], rules: Sequence[Mapping[str, str]],
                       float_islands: bool = True) -> Dict[str, List[str]]:
    """Per graph, the node names for hb_mapper's `run_on_cpu`: the report's CPU islands (unless
    float_islands is off), then the user's rules {op, scope}. A rule must match a node in at least
    one graph, else it is an error (a typo would silently quantize what it meant to protect)."""
    names = {graph: ([p.node for p in report if p.run_on_cpu] if float_islands else [])
             for graph, report in reports.items()}
    for index, rule in enumerate(rules):
        if set(rule) != {"op", "scope"}:
            raise EdgeAsrError(f"bpu.run_on_cpu[{index}]: expected keys op and scope, got {sorted(rule)}")
        matched = False
        for graph, report in reports.items():
            for node in nodes_matching(report, rule["op"], rule["scope"]):
                matched = True
                if node not in names[graph]:
                    names[graph].append(node)
        if not matched:
            raise EdgeAsrError(f"bpu.run_on_cpu[{index}]: no {rule['op']} node matches {rule['scope']!r} "
                               f"in {', '.join(reports)}")
    return names
