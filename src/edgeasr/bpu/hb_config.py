"""hb_mapper `config.yaml` for the encoder and the CTC graph, validated against Horizon's documented keys.

The four sections (model_parameters, input_parameters, calibration_parameters,
compiler_parameters) follow the X3 PTQ guide; several inputs are `;`-joined in one string. Input
attributes come from the ONNX metadata, `run_on_cpu` from the op placement report. The
calibration *method* keys (calibration_type, max_percentile, per_channel) are added by the compile
stage (`with_calibration_method`), so that changing them reruns compile only.
"""

from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import yaml

from ..checks import is_one_of
from ..errors import EdgeAsrError

SECTIONS = ("model_parameters", "input_parameters", "calibration_parameters", "compiler_parameters")
ALLOWED: Dict[str, Dict[str, object]] = {  # key -> allowed values (tuple) or a type
    "model_parameters": {
        "onnx_model": str, "march": ("bernoulli2",), "output_model_file_prefix": str, "working_dir": str,
        "layer_out_dump": (True, False), "output_nodes": str, "remove_node_type": str, "remove_node_name": str,
        "debug_mode": str,
    },
    "input_parameters": {
        "input_name": str, "input_type_train": str, "input_layout_train": str, "input_type_rt": str,
        "input_layout_rt": str, "input_space_and_range": str, "input_shape": str, "input_batch": str,
        "norm_type": str, "mean_value": str, "scale_value": str,
    },
    "calibration_parameters": {
        "cal_data_dir": str, "cal_data_type": str, "preprocess_on": (True, False),
        "calibration_type": ("default", "mix", "kl", "max", "load", "skip"), "max_percentile": float,
        "per_channel": (True, False), "run_on_cpu": str, "run_on_bpu": str,
    },
    "compiler_parameters": {
        "compile_mode": ("latency", "bandwidth"), "debug": (True, False), "core_num": (1, 2),
        "optimize_level": ("O0", "O1", "O2", "O3"), "input_source": dict, "max_time_per_fc": int, "jobs": int,
    },
}
PER_INPUT_VALUES = {  # `;`-joined keys and the values each entry may take
    "input_type_train": ("featuremap", "rgb", "bgr", "yuv444", "gray", "yuv420sp", "nv12"),
    "input_type_rt": ("featuremap", "rgb", "bgr", "yuv444", "gray", "yuv420sp", "nv12"),
    "input_layout_train": ("NCHW", "NHWC"),
    "input_layout_rt": ("NCHW", "NHWC"),
    "norm_type": ("no_preprocess", "data_mean", "data_scale", "data_mean_and_scale"),
    "cal_data_type": ("float32", "uint8"),
}


def validate(config: Mapping[str, Mapping[str, object]], source: str) -> None:
    """Every section present, every key known, every value allowed; `;`-lists as long as input_name."""
    missing = [s for s in SECTIONS if s not in config]
    if missing:
        raise EdgeAsrError(f"{source}: missing section {missing[0]}")
    n_inputs = len(str(config["input_parameters"].get("input_name", "")).split(";"))
    for section, values in config.items():
        if section not in ALLOWED:
            raise EdgeAsrError(f"{source}: unknown section {section} (hb_mapper has {', '.join(SECTIONS)})")
        for key, value in values.items():
            rule = ALLOWED[section].get(key)
            if rule is None:
                raise EdgeAsrError(f"{source}: {section}.{key} is not an hb_mapper key")
            ok = isinstance(value, rule) if isinstance(rule, type) else is_one_of(value, rule)
            if rule is float:
                ok = isinstance(value, float) and 0.0 < value <= 1.0
            if not ok:
                raise EdgeAsrError(f"{source}: {section}.{key} = {value!r} (allowed: {rule})")
            if key in PER_INPUT_VALUES:
                entries = str(value).split(";")
                bad = [e for e in entries if e not in PER_INPUT_VALUES[key]]
                if bad or (key != "cal_data_type" and len(entries) != n_inputs):
                    raise EdgeAsrError(f"{source}: {section}.{key} = {value!r}: need {n_inputs} of "
                                       f"{PER_INPUT_VALUES[key]}")
    if config["model_parameters"].get("march") is None:
        raise EdgeAsrError(f"{source}: model_parameters.march is required")


def build_config(
    model_name: str,
    onnx_model: str,
    meta: Mapping[str, str],
    cal_dirs: Sequence[str],
    run_on_cpu: Sequence[str],
    march: str,
    compiler: Mapping[str, object],
) -> Dict[str, Dict[str, object]]:
    """One model's config; `meta` is its ONNX metadata (input_name, input_shape, types, layouts)."""
    n = len(meta["input_name"].split(";"))
    calibration: Dict[str, object] = {
        "cal_data_dir": ";".join(cal_dirs),
        "cal_data_type": ";".join(["float32"] * n),
        "preprocess_on": False,
    }
    if run_on_cpu:
        calibration["run_on_cpu"] = ";".join(run_on_cpu)
    config = {
        "model_parameters": {
            "onnx_model": onnx_model,
            "march": march,
            "output_model_file_prefix": model_name,  # the board runtime finds models by this name
            "working_dir": f"model_output_{model_name}",
            "layer_out_dump": False,
        },
        "input_parameters": {
            "input_name": meta["input_name"],
            "input_type_train": meta["input_type"],
            "input_layout_train": meta["input_layout_train"],
            "input_type_rt": meta["input_type"],
            "input_layout_rt": meta["input_layout_rt"],
            "input_shape": meta["input_shape"],
            "norm_type": meta["norm_type"],
        },
        "calibration_parameters": calibration,
        "compiler_parameters": dict(compiler),
    }
    validate(config, f"{model_name} config")
    return config


def with_calibration_method(config: Mapping[str, Mapping[str, object]], calibration_type: str,
                            max_percentile: float, per_channel: bool) -> Dict[str, Dict[str, object]]:
    """The config with the calibration method keys set (max_percentile applies to `max` only)."""
    out = {section: dict(values) for section, values in config.items()}
    out["calibration_parameters"]["calibration_type"] = calibration_type
    out["calibration_parameters"]["per_channel"] = per_channel
    if calibration_type == "max" and max_percentile < 1.0:
        out["calibration_parameters"]["max_percentile"] = float(max_percentile)
    validate(out, "compile config")
    return out


def with_run_on_cpu(config: Mapping[str, Mapping[str, object]], nodes: Sequence[str]) -> Dict[str, Dict[str, object]]:
    """The config with `nodes` added to run_on_cpu (hb_mapper's `;`-separated node names)."""
    out = {section: dict(values) for section, values in config.items()}
    names = run_on_cpu_list(config) + [n for n in nodes if n not in set(run_on_cpu_list(config))]
    if names:
        out["calibration_parameters"]["run_on_cpu"] = ";".join(names)
    return out


def write_config(path: Path, config: Mapping[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))


def read_config(path: Path) -> Dict[str, Dict[str, object]]:
    config = yaml.safe_load(path.read_text())
    validate(config, str(path))
    return config


def run_on_cpu_list(config: Mapping[str, Mapping[str, object]]) -> List[str]:
    value = config["calibration_parameters"].get("run_on_cpu", "")
    return [name for name in str(value).split(";") if name]
