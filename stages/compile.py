"""compile: hb_mapper makertbin when installed, else the onnxruntime INT8 emulation; per-node cosine;
the INT8 sensitivity by layer on the dev utterances and, with `bpu.max_cer_delta`, the smallest set
of layers kept in float (added to run_on_cpu) that meets it. Without the X3 chosen, a note."""

import tempfile
from pathlib import Path

import onnx

from edgeasr.artifact.manifest import write_manifest
from edgeasr.bpu.compile import (MODELS, CalibrationSettings, calibrate_graph, compile_all, compile_artifacts,
                                 read_configs, worst_nodes)
from edgeasr.bpu.export import X3_GRAPHS, x3_graphs
from edgeasr.bpu.hb_config import with_run_on_cpu
from edgeasr.bpu.hb_mapper import find_hb_mapper
from edgeasr.bpu.placement import node_macs
from edgeasr.cli import atomic_dir, run_stage, write_csv, write_json, write_off_outputs
from edgeasr.evaluate.engine import compute_engine
from edgeasr.evaluate.sensitivity import dev_scorer, int8_study, study_settings
from edgeasr.params import load_stage_params
from edgeasr.paths import (BPU, BPU_CONFIG, CALIBRATION, COMPILE, COMPILE_METRICS, DEV_REFERENCE,
                           INT8_SENSITIVITY_TABLE, QUANT_NODES_TABLE)
from edgeasr.targets import off_note

NODE_COLUMNS = ["graph", "node", "op", "device", "int8", "cosine"]
SENSITIVITY_COLUMNS = ["group", "graph", "int8_nodes", "macs_per_chunk", "cer", "cer_delta", "cosine_encoder_out",
                       "cosine_log_probs"]


def main(argv: list) -> None:
    params = load_stage_params("compile", argv)
    note = off_note("compile", params.npu)
    if note:
        write_off_outputs(note, [COMPILE], [COMPILE_METRICS],
                          {QUANT_NODES_TABLE: NODE_COLUMNS, INT8_SENSITIVITY_TABLE: SENSITIVITY_COLUMNS})
        return
    settings = study_settings(params.data.dev_list, params.bpu.sensitivity_utts, params.bpu.max_cer_delta)
    method = CalibrationSettings(params.bpu.calibration_type, float(params.bpu.max_percentile), bool(params.bpu.per_channel))
    configs = read_configs(BPU_CONFIG, method)
    executable = find_hb_mapper()
    float_graphs = x3_graphs(BPU)
    study = None
    with atomic_dir(COMPILE) as out, tempfile.TemporaryDirectory(prefix="edgeasr-compile-") as tmp:
        # Ranges for the emulation, and for the study even when hb_mapper compiles (its own quantized
        # models cannot be evaluated here).
        graphs = ({name: calibrate_graph(name, configs[name], method, CALIBRATION, Path(tmp)) for name in MODELS}
                  if settings or not executable else {})
        if settings:
            scorer = dev_scorer(DEV_REFERENCE, settings[0], settings[1], float_graphs["encoder"], float_graphs["ctc"],
                                params.compare.threads)
            macs = {n: m for name in MODELS for n, m in node_macs(onnx.load(str(float_graphs[name]))).items()}
            with compute_engine() as (engine, _):
                study = int8_study({n: g.graph for n, g in graphs.items()}, scorer, macs, params.bpu.max_cer_delta,
                                   Path(tmp), engine)
            if "search" in study:
                configs = {n: with_run_on_cpu(c, study["search"]["float_nodes"][n]) for n, c in configs.items()}
        report = compile_all(configs, graphs, executable, out, params.bpu.cosine_samples)
        rows = [row for name in X3_GRAPHS for row in report[name].pop("nodes")]
        worst = worst_nodes(rows)
        write_manifest(out, "compile", compile_artifacts(out, report["mode"], float_graphs),
                       info={"mode": report["mode"], "worst_nodes": worst})
    write_csv(QUANT_NODES_TABLE, NODE_COLUMNS, rows)
    write_csv(INT8_SENSITIVITY_TABLE, SENSITIVITY_COLUMNS, study["table"] if study else [])
    metrics = {**report, "worst_nodes": worst}
    if study:
        metrics["sensitivity"] = {k: v for k, v in study.items() if k not in ("table", "search")}
        if "search" in study:
            metrics["float_set_search"] = {k: v for k, v in study["search"].items() if k != "float_nodes"}
            if executable:
                metrics["float_set_search"]["evaluated_on"] = (
                    "the emulated INT8 graphs: hb_mapper's quantized models run only in Horizon's HB_ONNXRuntime "
                    "or on the board; the chosen run_on_cpu went into hb_mapper's configs")
    write_json(COMPILE_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
