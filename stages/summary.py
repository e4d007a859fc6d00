"""summary: every evaluated artifact side by side (metrics/summary.csv), the worst quantized nodes (for
plots), and which NPU targets the run built (metrics/summary.json)."""

import json

from edgeasr.cli import run_stage, write_csv, write_json
from edgeasr.evaluate.summary import ARTIFACT_METRICS, summary_rows
from edgeasr.params import load_stage_params
from edgeasr.paths import QUANT_METRICS, SUMMARY_METRICS, SUMMARY_TABLE, TORCH_METRICS, WORST_NODES_TABLE
from edgeasr.targets import targets_report


def main(argv: list) -> None:
    params = load_stage_params("summary", argv)
    torch = json.loads(TORCH_METRICS.read_text())
    evaluations = {path: json.loads(path.read_text()) for path, _ in ARTIFACT_METRICS.values()}
    rows = summary_rows(torch, evaluations, params.streaming.chunk_size, params.streaming.num_decoding_left_chunks)
    write_csv(SUMMARY_TABLE, list(rows[0]), rows)
    worst = [{"node": f"{n['graph']}:{n['node']}", "op": n["op"], "cosine": n["cosine"]}
             for n in evaluations[QUANT_METRICS].get("worst_nodes", [])]
    write_csv(WORST_NODES_TABLE, ["node", "op", "cosine"], worst)
    targets = targets_report(params.npu)
    write_json(SUMMARY_METRICS, {"npu": params.npu.name, "targets": targets})
    for target, what in targets.items():
        print(f"{target}: {what}")


if __name__ == "__main__":
    run_stage(main)
