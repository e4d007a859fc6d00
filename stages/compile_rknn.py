"""compile_rknn: with npu.rk3588 on, the X3 float graphs compiled by rknn-toolkit2 (INT8, from the calibrate
stage's samples) into .rknn files, with the toolkit's per-layer accuracy analysis and its NPU/CPU op
table, listed in exp/rknn/artifacts.json; without the RK3588 chosen, a note."""

from edgeasr.artifact.manifest import write_manifest
from edgeasr.bpu.export import x3_graphs
from edgeasr.cli import atomic_dir, run_stage, write_csv, write_json, write_off_outputs
from edgeasr.params import load_stage_params, to_dict
from edgeasr.paths import BPU, CALIBRATION, RKNN, RKNN_COMPILE_METRICS, RKNN_LAYERS_TABLE, RKNN_OPS_TABLE
from edgeasr.rknn.compile import compile_rknn, rknn_artifacts
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
    graphs = x3_graphs(BPU)
    with atomic_dir(RKNN) as out:
        metrics, layers, ops = compile_rknn(find_python(rknn["toolkit_python"]), rknn, graphs, CALIBRATION, out)
        write_manifest(out, "compile_rknn", rknn_artifacts(out, rknn, graphs))
    write_csv(RKNN_LAYERS_TABLE, LAYER_COLUMNS, layers)
    write_csv(RKNN_OPS_TABLE, OP_COLUMNS, ops)
    write_json(RKNN_COMPILE_METRICS, metrics)
    print({k: v for k, v in metrics.items() if k != "config"})


if __name__ == "__main__":
    run_stage(main)
