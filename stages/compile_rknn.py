"""compile_rknn: with npu.rk3588 on, the RK3588's own fixed-cache graph (exp/rknn_export) compiled by
rknn-toolkit2 (INT8, calibrated from the calibrate stage's utterance rule, written in the toolkit's list
format) into a .rknn file, with the toolkit's per-layer accuracy analysis and its NPU/CPU op table,
listed in exp/rknn/artifacts.json; without the RK3588 chosen, a note."""

from edgeasr.artifact.manifest import read_manifest, write_manifest
from edgeasr.cli import atomic_dir, run_stage, write_csv, write_json, write_off_outputs
from edgeasr.params import load_stage_params, to_dict
from edgeasr.paths import RKNN, RKNN_COMPILE_METRICS, RKNN_EXPORT, RKNN_LAYERS_TABLE, RKNN_OPS_TABLE
from edgeasr.rknn.compile import compile_rknn, rknn_artifacts
from edgeasr.rknn.export import FLOAT_ARTIFACT, GRAPH
from edgeasr.rknn.toolkit import find_python
from edgeasr.targets import off_note

LAYER_COLUMNS = ["graph", "group", "tensor", "op", "single_cos", "entire_cos"]
OP_COLUMNS = ["graph", "id", "op", "target", "name"]


def main(argv: list) -> None:
    params = load_stage_params("compile_rknn", argv)
    note = off_note("compile_rknn", params.npu)
    if note:
        write_off_outputs(note, [RKNN], [RKNN_COMPILE_METRICS],
                          {RKNN_LAYERS_TABLE: LAYER_COLUMNS, RKNN_OPS_TABLE: OP_COLUMNS})
        return
    rknn = to_dict(params.rknn)
    graph = read_manifest(RKNN_EXPORT).artifacts[FLOAT_ARTIFACT].path(RKNN_EXPORT, GRAPH)
    calibration = {"data_list": params.data.cali_list, **to_dict(params.calibrate)}
    with atomic_dir(RKNN) as out:
        metrics, layers, ops = compile_rknn(find_python(rknn["toolkit_python"]), rknn, graph, calibration, out)
        write_manifest(out, "compile_rknn", rknn_artifacts(out, rknn, graph))
    write_csv(RKNN_LAYERS_TABLE, LAYER_COLUMNS, layers)
    write_csv(RKNN_OPS_TABLE, OP_COLUMNS, ops)
    write_json(RKNN_COMPILE_METRICS, metrics)
    print({k: v for k, v in metrics.items() if k != "config"})


if __name__ == "__main__":
    run_stage(main)
