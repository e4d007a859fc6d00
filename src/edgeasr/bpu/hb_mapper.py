"""The real toolchain: `hb_mapper makertbin` as a subprocess, its log kept, its cosine table parsed.

Horizon's Python wheels pin an old protobuf, so the toolchain lives in its own environment and is
only ever called as a program found on PATH, never imported.
"""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import EdgeAsrError

SUCCESS = "Convert to runtime bin file successfully"


def find_hb_mapper() -> Optional[str]:
    return shutil.which("hb_mapper")


def run_makertbin(executable: str, config: Path, log: Path) -> str:
    """hb_mapper makertbin --model-type onnx --config <config>; output to `log`; returns the log text."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        subprocess.run([executable, "makertbin", "--model-type", "onnx", "--config", str(config)],
                       stdout=out, stderr=subprocess.STDOUT, check=True)
    text = log.read_text(encoding="utf-8", errors="replace")
    if SUCCESS not in text:
        raise EdgeAsrError(f"{log}: hb_mapper finished without '{SUCCESS}'")
    return text


def _columns(line: str, starts: List[int]) -> List[str]:
    bounds = starts + [len(line) + 1]
    return [line[a:b].strip() for a, b in zip(bounds, bounds[1:])]


def parse_cosine_table(log_text: str) -> List[Dict[str, object]]:
    """Rows of the per-node table (`Node | ON | Subgraph | Type | Cosine Similarity | Threshold`,
    newer toolchains add columns): found by header names, whitespace- or `|`-aligned, any log prefix."""
    lines = log_text.splitlines()
    header_index = next((i for i, line in enumerate(lines)
                         if re.search(r"\bNode\b", line) and "Cosine Similarity" in line), None)
    if header_index is None:
        raise EdgeAsrError("hb_mapper log: no per-node table with a 'Cosine Similarity' column")
    header = lines[header_index]
    offset = header.index("Node")
    names = [n.strip() for n in re.split(r"\s{2,}|\|", header[offset:]) if n.strip()]
    starts = [header.index(n, offset) - offset for n in names]
    rows = []
    for line in lines[header_index + 1:]:
        body = line[offset:] if len(line) > offset else ""
        if not body.strip() or set(body.strip()) <= set("-=+|"):
            if rows:
                break
            continue
        if SUCCESS in line:
            break
        cells = [c.strip() for c in body.split("|")] if "|" in header else _columns(body, starts)
        cells = [c for c in cells if c != ""] if "|" in header else cells
        row: Dict[str, object] = dict(zip(names, cells))
        try:
            row["Cosine Similarity"] = float(str(row.get("Cosine Similarity", "")))
        except ValueError:
            row["Cosine Similarity"] = None  # e.g. CPU nodes without a comparison
        rows.append(row)
    return rows


def collect_outputs(working_dir: Path, prefix: str, destination: Path) -> Dict[str, str]:
    """Copy `<prefix>.bin` and `<prefix>_quantized_model.onnx` out of hb_mapper's working_dir."""
    found = {}
    for name in (f"{prefix}.bin", f"{prefix}_quantized_model.onnx"):
        source = working_dir / name
        if not source.is_file():
            raise EdgeAsrError(f"{source}: not written by hb_mapper")
        shutil.copy(source, destination / name)
        found[name] = str(destination / name)
    return found
