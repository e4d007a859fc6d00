"""Compile the X3 graphs: the real `hb_mapper makertbin` when it is on PATH, else an honest emulation.

Both paths take the configs written by bpu_config, add the calibration method, and report per
node how far the quantized output is from the float one (cosine similarity): hb_mapper's own table
when compiled, onnxruntime's QDQ emulation when emulated. Every result says which it is.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import onnx

from ..artifact.manifest import CTC_MODES, Artifact
from ..artifact.metadata import read_metadata, write_metadata
from .calibration import calibration_folders, read_samples
from .export import X3_GRAPHS
from .hb_config import read_config, run_on_cpu_list, with_calibration_method, write_config
from .hb_mapper import collect_outputs, parse_cosine_table, run_makertbin
from .int8_groups import QuantGraph
from .placement import read_placement
from .quantize import node_cosines, output_cosine, write_qdq
from .ranges import calibrate

log = logging.getLogger(__name__)
MODELS = tuple(reversed(X3_GRAPHS))  # NOTE: WeNet's X3 recipe compiles ctc first, then the encoder
QUANTIZED = "quantized"  # the manifest entry of the quantized graphs (emulated, or hb_mapper's)


@dataclass(frozen=True)
class CalibrationSettings:
    calibration_type: str
    max_percentile: float
    per_channel: bool


@dataclass(frozen=True)
class CalibratedGraph:
    """One graph ready to quantize: its INT8 candidates with ranges, the calibration samples and
    what the calibration chose."""

    graph: QuantGraph
    samples: List[dict]
    calibration: Dict[str, object]


def quantized_path(out_dir: Path, name: str) -> Path:
    return out_dir / name / f"{name}_quantized_model.onnx"


def compile_real(executable: str, name: str, config: dict, out_dir: Path) -> Dict[str, object]:
    """One model through hb_mapper; config and log kept in out_dir/<name>/."""
    folder = out_dir / name
    config_path = folder / "config.yaml"
    config = {**config, "model_parameters": {**config["model_parameters"],
                                             "working_dir": str(folder / "model_output")}}
    write_config(config_path, config)
    text = run_makertbin(executable, config_path, folder / "hb_mapper_makertbin.log")
    files = collect_outputs(folder / "model_output", config["model_parameters"]["output_model_file_prefix"], folder)
    # The quantized ONNX carries the float graph's metadata, the contract every backend asserts.
    model = Path(config["model_parameters"]["onnx_model"])
    write_metadata(quantized_path(out_dir, name), {**read_metadata(model), "quantization": "hb_mapper"})
    rows = [{"graph": name, "node": r.get("Node"), "op": r.get("Type"), "device": r.get("ON"),
             "cosine": r.get("Cosine Similarity")} for r in parse_cosine_table(text)]
    return {"files": files, "nodes": rows, "run_on_cpu": run_on_cpu_list(config)}


def read_configs(config_dir: Path, method: CalibrationSettings) -> Dict[str, dict]:
    """bpu_config's config per model, with the calibration method set."""
    return {name: with_calibration_method(read_config(config_dir / f"config_{name}.yaml"), method.calibration_type,
                                          method.max_percentile, method.per_channel)
            for name in MODELS}


def calibrate_graph(name: str, config: dict, method: CalibrationSettings, cal_dir: Path,
                    scratch: Path) -> CalibratedGraph:
    """The graph's INT8 candidates (the BPU nodes minus the config's run_on_cpu) and their ranges,
    computed once like hb_mapper's calibration; returns them, the samples and what was chosen."""
    model = Path(config["model_parameters"]["onnx_model"])
    run_on_cpu = set(run_on_cpu_list(config))
    # The config decides: an island node not in run_on_cpu is quantized, as hb_mapper would do.
    bpu_nodes = tuple(p.node for p in read_placement(model)
                      if (p.device == "BPU" or p.run_on_cpu) and p.node not in run_on_cpu)
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in onnx.load(str(model)).graph.input}
    samples = list(read_samples(calibration_folders(cal_dir, name, list(inputs)), inputs))
    ranges, chosen = calibrate(model, samples, bpu_nodes, method.calibration_type, method.max_percentile,
                               method.per_channel, scratch)
    return CalibratedGraph(QuantGraph(name, model, bpu_nodes, ranges, method.per_channel), samples, chosen)


def compile_emulated(calibrated: CalibratedGraph, config: dict, out_dir: Path, cosine_samples: int) -> Dict[str, object]:
    """One model quantized by onnxruntime like hb_mapper would: its INT8 candidates minus the
    config's run_on_cpu, the rest float."""
    graph, samples = calibrated.graph, calibrated.samples
    folder = out_dir / graph.name
    write_config(folder / "config.yaml", config)  # what hb_mapper would have been given
    run_on_cpu = set(run_on_cpu_list(config))
    int8 = [n for n in graph.bpu_nodes if n not in run_on_cpu]
    out = quantized_path(out_dir, graph.name)
    write_qdq(graph.float_model, graph.ranges, int8, graph.per_channel, out)
    write_metadata(out, {**read_metadata(graph.float_model), "quantization": "emulated_int8_qdq"})
    on_bpu = set(int8)
    rows = [{"graph": graph.name, **row, "device": "BPU" if row["node"] in on_bpu else "CPU"}
            for row in node_cosines(graph.float_model, out, samples[:cosine_samples], on_bpu)]
    chosen = {**calibrated.calibration,
              "output_cosine_first_sample_final": round(output_cosine(graph.float_model, out, samples[0]), 6)}
    return {"files": {out.name: str(out)}, "nodes": rows, "run_on_cpu": sorted(run_on_cpu),
            "calibration": chosen, "calibration_samples": len(samples), "int8_nodes": len(int8)}


def compile_all(configs: Mapping[str, dict], graphs: Mapping[str, CalibratedGraph], executable: Optional[str],
                out_dir: Path, cosine_samples: int) -> Dict[str, object]:
    """ctc then encoder, by hb_mapper when `executable` is given, else emulated with the calibrated
    `graphs`; returns {mode, <model>: report}, files relative to out_dir."""
    mode = "compiled" if executable else "emulated"
    log.info("compile: %s", "hb_mapper at " + executable if executable else "hb_mapper not on PATH: emulating")
    report: Dict[str, object] = {"mode": mode}
    for name in MODELS:
        if executable:
            report[name] = compile_real(executable, name, configs[name], out_dir)
        else:
            report[name] = compile_emulated(graphs[name], configs[name], out_dir, cosine_samples)
        # Relative to out_dir: the stage writes into a partial folder and renames it afterwards.
        report[name]["files"] = {k: str(Path(v).relative_to(out_dir)) for k, v in report[name]["files"].items()}
    return report


def bin_path(out_dir: Path, name: str) -> Path:
    return out_dir / name / f"{name}.bin"


def compile_artifacts(out_dir: Path, mode: str, float_graphs: Mapping[str, Path]) -> Dict[str, Artifact]:
    """exp/compile's manifest entries: the quantized graphs (what is evaluated: the emulation's, or the
    `*_quantized_model.onnx` hb_mapper writes), and with hb_mapper the `.bin` files (not runnable here)."""
    def rel(path: Path) -> str:
        return os.path.relpath(path, out_dir)

    made = ("hb_mapper makertbin: its *_quantized_model.onnx, run by onnxruntime" if mode == "compiled"
            else "INT8 emulated by onnxruntime (QDQ from hb_mapper's calibration method), not hb_mapper")
    artifacts = {QUANTIZED: Artifact("x3_onnx", {name: rel(quantized_path(out_dir, name)) for name in X3_GRAPHS},
                                     "streaming", CTC_MODES, True, made, options={"protocol": "exact"},
                                     cosine_to={name: rel(float_graphs[name]) for name in X3_GRAPHS})}
    if mode == "compiled":
        artifacts["x3_bin"] = Artifact("x3_bin", {name: rel(bin_path(out_dir, name)) for name in X3_GRAPHS},
                                       "streaming", CTC_MODES, False, "hb_mapper makertbin", runnable=False,
                                       reason="hb_mapper's .bin runs only on the X3 board's BPU runtime")
    return artifacts


def worst_nodes(rows: Sequence[dict], count: int = 10) -> List[dict]:
    """The `count` nodes with the lowest cosine similarity (rows without a value are skipped)."""
    scored = [r for r in rows if isinstance(r.get("cosine"), float)]
    return sorted(scored, key=lambda r: r["cosine"])[:count]
