"""summary: every artifact side by side (metrics/summary.csv) and the worst quantized nodes, for plots."""

import csv
import json
from pathlib import Path

from edgeasr.cli import run_stage
from edgeasr.evaluate.summary import summary_rows
from edgeasr.params import load_stage_params

METRICS = Path("metrics")


def write_csv(path: Path, rows: list) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list) -> None:
    p = load_stage_params("summary", argv)
    loaded = {name: json.loads((METRICS / f"{name}.json").read_text()) for name in ("onnx", "bpu", "quant")}
    rows = summary_rows(loaded["onnx"], loaded["bpu"], loaded["quant"], p.streaming.chunk_size,
                        p.streaming.num_decoding_left_chunks)
    write_csv(METRICS / "summary.csv", rows)
    worst = [{"node": f"{n['graph']}:{n['node']}", "op": n["op"], "cosine": n["cosine"]}
             for n in loaded["quant"]["worst_nodes"]]
    write_csv(METRICS / "worst_nodes.csv", worst)


if __name__ == "__main__":
    run_stage(main)
