"""compile: hb_mapper makertbin when installed, else the onnxruntime INT8 emulation; per-node cosine."""

import csv

from edgeasr.bpu.compile import CalibrationSettings, compile_all, worst_nodes, write_manifest
from edgeasr.cli import atomic_dir, run_stage, write_json
from edgeasr.params import load_stage_params
from edgeasr.paths import BPU_CONFIG, CALIBRATION, COMPILE, COMPILE_METRICS, QUANT_NODES_TABLE

CONFIGS, OUT = BPU_CONFIG, COMPILE
NODE_COLUMNS = ["graph", "node", "op", "device", "int8", "cosine"]


def main(argv: list) -> None:
    p = load_stage_params("compile", argv)
    method = CalibrationSettings(p.bpu.calibration_type, float(p.bpu.max_percentile), bool(p.bpu.per_channel))
    with atomic_dir(OUT) as out:  # no exp/compile (and no manifest) unless both models compiled
        report = compile_all(CONFIGS, CALIBRATION, out, method, p.bpu.cosine_samples)
        rows = [row for name in ("encoder", "ctc") for row in report[name].pop("nodes")]
        worst = worst_nodes(rows)
        write_manifest(out, report, worst)
    with open(QUANT_NODES_TABLE, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=NODE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    write_json(COMPILE_METRICS, {**report, "worst_nodes": worst})


if __name__ == "__main__":
    run_stage(main)
