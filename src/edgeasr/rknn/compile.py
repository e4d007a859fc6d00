"""Compile the RK3588's own graph with rknn-toolkit2, and summarize what the toolkit said.

Contract: the input is export_rknn's static fixed-cache streaming graph (exp/rknn_export, any model
rknn.export accepts: the X3 contract does not apply) and the calibration list written for it from
the calibrate stage's utterance rule (rknn.dataset). The op table in metrics/rknn_ops.csv says where
each op of each build runs (NPU or CPU).

    <out>/dataset/...            the calibration samples as .npy lists (rknn.dataset)
    <out>/<graph>.rknn           the compiled model, what the board's runtime loads
    <out>/<graph>.build.log      the toolkit's verbose build log (layer table: op, NPU/CPU)
    <out>/<graph>.analysis/      accuracy_analysis on the first calibration sample (error_analysis.txt)
    <out>/<graph>.tensors.json   with rknn.max_cer_delta: the tensors hybrid quantization can keep in
                                 float16 (rknn.hybrid), and the search's candidate builds in the
                                 simulator logs of <out>/budget/
"""

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..artifact.manifest import CTC_MODES, Artifact
from ..bpu.int8_groups import node_group
from .dataset import first_sample, listed_samples, write_dataset
from .export import GRAPH
from .reports import parse_accuracy, parse_layer_table
from .toolkit import TOOLKIT_REQUIREMENTS, rknn_config, run_worker

ARTIFACT = "rk3588_int8"  # the manifest entry of the compiled models
# NOTE: rknn-toolkit2 2.5.0's simulator runs only a model built in its own session ("RKNN model that
# loaded by 'load_rknn' not support inference on the simulator"), so evaluation rebuilds from the
# inputs the .rknn files were compiled from (the same ONNX graphs, dataset lists and config).
SIMULATED = ("rknn-toolkit2's x86 simulator, the models rebuilt in its session from the ONNX graphs, dataset "
             "lists and config the .rknn files were compiled from (the simulator cannot run a loaded .rknn)")
IO_OPS = ("InputOperator", "OutputOperator")  # the runtime's tensor hand-offs, listed on the CPU
WORST_LAYERS = 5


def rknn_path(out: Path, model: str) -> Path:
    return out / f"{model}.rknn"


def analysis_file(out: Path, model: str) -> Path:
    return out / f"{model}.analysis" / "error_analysis.txt"


def calibrate_rknn(graph: Path, calibration: Mapping[str, Any], out: Path) -> Tuple[Path, int]:
    """The calibration samples of `graph` under out/dataset -> (the list file, samples written).
    calibration: the calibrate section (data_list, max_samples, seed)."""
    dataset, manifest = write_dataset(graph, GRAPH, Path(calibration["data_list"]), int(calibration["max_samples"]),
                                      int(calibration["seed"]), out / "dataset")
    return dataset, int(manifest["utterances_used"])


def build_model(python: Path, rknn: Mapping[str, Any], model: str, graph: Path, dataset: Path, samples: int,
                out: Path, float16_tensors: Sequence[str] = ()
                ) -> Tuple[Dict[str, Any], List[Dict[str, object]], List[Dict[str, object]]]:
    """Build one graph (INT8; with hybrid quantization when `float16_tensors` names any); returns
    (its metrics, its accuracy rows, its op rows)."""
    job = {"config": rknn_config(rknn), "models": {model: {
        "onnx": str(graph.resolve()), "dataset": str(dataset.resolve()), "rknn": str(rknn_path(out, model).resolve()),
        "float16_tensors": list(float16_tensors),
        "analysis_inputs": [str(Path(p).resolve()) for p in first_sample(dataset)],
        "analysis_dir": str(analysis_file(out, model).parent.resolve())}}}
    start = time.monotonic()
    log = out / f"{model}.build.log"
    ops = parse_layer_table(run_worker(python, "build", job, out / f"{model}.build.json", log), log)
    seconds = time.monotonic() - start
    accuracy = parse_accuracy(analysis_file(out, model).read_text(encoding="utf-8"), analysis_file(out, model))
    for row in accuracy:  # NOTE: the toolkit keeps ONNX tensor names, whose scope is their node's
        row["group"] = node_group(model, str(row["tensor"]))
    compute = [op for op in ops if op["op"] not in IO_OPS]
    cpu = [op for op in compute if op["target"] == "CPU"]
    worst = sorted(accuracy, key=lambda r: float(r["single_cos"]))[:WORST_LAYERS]
    metrics = {
        "calibration_samples": samples,
        "float16_tensors": len(float16_tensors),  # hybrid quantization: layer outputs kept in float16
        "build_seconds": round(seconds, 1),  # build + export + accuracy analysis, toolkit start included
        "rknn_bytes": rknn_path(out, model).stat().st_size,
        "ops": len(compute),
        "ops_on_npu": len(compute) - len(cpu),
        "ops_on_cpu": [f"{op['op']} {op['name']}" for op in cpu],
        "output_cosine": float(accuracy[-1]["entire_cos"]),  # the last analysed layer, errors accumulated
        "worst_layers": [{k: r[k] for k in ("group", "tensor", "op", "single_cos", "entire_cos")} for r in worst],
    }
    return metrics, accuracy, ops


def compile_rknn(python: Path, rknn: Mapping[str, Any], graph: Path, dataset: Path, samples: int, out: Path,
                 float16_tensors: Sequence[str] = ()
                 ) -> Tuple[Dict[str, Any], List[Dict[str, object]], List[Dict[str, object]]]:
    """Build the graph; returns (metrics, accuracy rows, op rows), rows tagged with their graph."""
    metrics: Dict[str, Any] = {"target": rknn["name"], "config": rknn_config(rknn)}
    metrics[GRAPH], accuracy, ops = build_model(python, rknn, GRAPH, graph, dataset, samples, out, float16_tensors)
    return metrics, [{"graph": GRAPH, **row} for row in accuracy], [{"graph": GRAPH, **row} for row in ops]


def rknn_artifacts(out: Path, rknn: Mapping[str, Any], graph: Path,
                   float16: Optional[Mapping[str, Sequence[str]]] = None) -> Dict[str, Artifact]:
    """exp/rknn's manifest entry: the .rknn file, and what the simulator rebuilds it from (with
    hybrid quantization: the float16 groups and their tensors, {group: tensors})."""
    def rel(path: Path) -> str:
        return os.path.relpath(path, out)

    dataset = out / "dataset" / f"{GRAPH}.txt"
    files = {GRAPH: rel(rknn_path(out, GRAPH)), f"{GRAPH}_onnx": rel(graph), f"{GRAPH}_dataset": rel(dataset)}
    # NOTE: the samples the list names are the artifact's files too: a simulator on another machine
    # rebuilds from them (the engine ships an artifact's files, and the manifest checks them).
    for index, sample in enumerate(listed_samples(dataset)):
        files[f"{GRAPH}_sample_{index}"] = rel(sample)
    kept = f", {', '.join(float16)} in float16 (hybrid quantization)" if float16 else ""
    options = {"config": rknn_config(rknn), "speed": "simulator"}
    if float16:
        options.update(float16_groups=list(float16), float16_tensors=[t for ts in float16.values() for t in ts])
    return {ARTIFACT: Artifact("rknn_simulator", files, "streaming", CTC_MODES, True,
                               f"{TOOLKIT_REQUIREMENTS[0]} INT8{kept} for the {rknn['name']}; evaluated in {SIMULATED}",
                               options=options, cosine_to={GRAPH: rel(graph)})}
