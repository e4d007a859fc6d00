"""What rknn-toolkit2 says about a build, parsed into rows: its layer table (each op on the NPU or the
CPU) and its accuracy analysis (per-layer cosine, simulator vs float).

Both are text meant for people, so they are found by their headers and read defensively; a format
that changed stops with the file named, never with an empty table.
"""

import re
from pathlib import Path
from typing import Dict, List

from ..errors import EdgeAsrError

LAYER_TABLE_TITLE = "Network Layer Information Table"
# `D RKNN: [12:57:48.458] 16   Mul   INT8   NPU   (1,1,71,80),(1,1,1,80)   (1,1,71,80)   0/0/0   90   Mul:/embed/Mul`
_LAYER_ROW = re.compile(r"\]\s+(\d+)\s+(\w+)\s+(\w+)\s+(NPU|CPU)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(\S+))?\s*$")
# `[Conv] /embed/conv/conv.0/Conv_output_0     0.99960 | 1.71406   0.99978 | 1.26321`
_ACCURACY_ROW = re.compile(r"^\[(\w+)\]\s+(\S+)\s+([-\d.]+)\s*\|\s*([-\d.]+)\s+([-\d.]+)\s*\|\s*([-\d.]+)\s*$")


def parse_layer_table(log_text: str, source: Path) -> List[Dict[str, object]]:
    """Rows {id, op, target, name} of the build's layer table (verbose log). Ops the compiler fused
    into the one before them have no name."""
    lines = log_text.splitlines()
    start = next((i for i, line in enumerate(lines) if LAYER_TABLE_TITLE in line), None)
    if start is None:
        raise EdgeAsrError(f"{source}: no '{LAYER_TABLE_TITLE}' (the build ran without verbose=True?)")
    rows: List[Dict[str, object]] = []
    for line in lines[start + 1:]:
        match = _LAYER_ROW.search(line)
        if match:
            full_name = match.group(9) or ""
            rows.append({"id": int(match.group(1)), "op": match.group(2), "target": match.group(4),
                         "name": full_name.split(":", 1)[1] if ":" in full_name else full_name})
        elif rows and "-----" in line:
            break
    if not rows:
        raise EdgeAsrError(f"{source}: the '{LAYER_TABLE_TITLE}' has no rows this parser reads")
    return rows


def parse_accuracy(text: str, source: Path) -> List[Dict[str, object]]:
    """Rows {op, tensor, entire_cos, single_cos} of error_analysis.txt: `entire` = this layer's output
    with every earlier layer quantized too (errors accumulate), `single` = this layer alone on float
    inputs. Layers the compiler fused away print no numbers and are left out."""
    rows = []
    for line in text.splitlines():
        match = _ACCURACY_ROW.match(line.strip())
        if match:
            rows.append({"op": match.group(1), "tensor": match.group(2), "entire_cos": float(match.group(3)),
                         "single_cos": float(match.group(5))})
    if not rows:
        raise EdgeAsrError(f"{source}: no per-layer rows (`[Op] tensor  cos | euc  cos | euc`)")
    return rows
