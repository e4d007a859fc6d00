"""summary: every artifact side by side (metrics/summary.csv) and the worst quantized nodes, for plots."""

import json

from edgeasr.cli import run_stage, write_csv
from edgeasr.evaluate.summary import summary_rows
from edgeasr.params import load_stage_params
from edgeasr.paths import BPU_METRICS, ONNX_METRICS, QUANT_METRICS, SUMMARY_TABLE, TORCH_METRICS, WORST_NODES_TABLE


def main(argv: list) -> None:
    params = load_stage_params("summary", argv)
    loaded = {name: json.loads(path.read_text())
              for name, path in (("torch", TORCH_METRICS), ("onnx", ONNX_METRICS), ("bpu", BPU_METRICS),
                                 ("quant", QUANT_METRICS))}
    rows = summary_rows(loaded["torch"], loaded["onnx"], loaded["bpu"], loaded["quant"], params.streaming.chunk_size,
                        params.streaming.num_decoding_left_chunks)
    write_csv(SUMMARY_TABLE, list(rows[0]), rows)
    worst = [{"node": f"{n['graph']}:{n['node']}", "op": n["op"], "cosine": n["cosine"]}
             for n in loaded["quant"]["worst_nodes"]]
    write_csv(WORST_NODES_TABLE, ["node", "op", "cosine"], worst)


if __name__ == "__main__":
    run_stage(main)
