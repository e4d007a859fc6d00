"""summary: every evaluated artifact side by side (metrics/summary.csv), the worst quantized nodes (for
plots), and which NPU targets the run built (metrics/summary.json)."""

import json

from edgeasr.cli import run_stage, write_csv, write_json
from edgeasr.evaluate.summary import summary_rows
from edgeasr.params import load_stage_params
from edgeasr.paths import (BPU_METRICS, ONNX_METRICS, QUANT_METRICS, RKNN_METRICS, SUMMARY_METRICS, SUMMARY_TABLE,
                           TORCH_METRICS, WORST_NODES_TABLE)
from edgeasr.targets import targets_report

EVALUATIONS = {"onnx": ONNX_METRICS, "bpu": BPU_METRICS, "quant": QUANT_METRICS, "rknn": RKNN_METRICS}


def main(argv: list) -> None:
    params = load_stage_params("summary", argv)
    torch = json.loads(TORCH_METRICS.read_text())
    evaluations = {name: json.loads(path.read_text()) for name, path in EVALUATIONS.items()}
    rows = summary_rows(torch, evaluations, params.streaming.chunk_size, params.streaming.num_decoding_left_chunks)
    write_csv(SUMMARY_TABLE, list(rows[0]), rows)
    worst = [{"node": f"{n['graph']}:{n['node']}", "op": n["op"], "cosine": n["cosine"]}
             for n in evaluations["quant"].get("worst_nodes", [])]
    write_csv(WORST_NODES_TABLE, ["node", "op", "cosine"], worst)
    targets = targets_report(params.npu)
    write_json(SUMMARY_METRICS, {"npu": params.npu.name, "targets": targets})
    for target, what in targets.items():
        print(f"{target}: {what}")


if __name__ == "__main__":
    run_stage(main)
