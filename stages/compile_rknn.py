"""compile_rknn: with npu=rk3588, the X3 float graphs compiled by rknn-toolkit2 (INT8, from the calibrate
stage's samples) into .rknn files, with the toolkit's per-layer accuracy analysis and its NPU/CPU op
table, listed in exp/rknn/artifacts.json; with any other target, a note that the RK3588 path is off."""

from edgeasr.artifact.manifest import write_manifest
from edgeasr.bpu.export import x3_graphs
from edgeasr.cli import atomic_dir, run_stage, write_csv, write_json
from edgeasr.params import load_stage_params, to_dict
from edgeasr.paths import BPU, CALIBRATION, RKNN, RKNN_COMPILE_METRICS, RKNN_LAYERS_TABLE, RKNN_OPS_TABLE
from edgeasr.rknn.compile import ARTIFACT, compile_rknn, off_note, rknn_artifacts
from edgeasr.rknn.toolkit import find_python

LAYER_COLUMNS = ["graph", "group", "tensor", "op", "single_cos", "entire_cos"]
OP_COLUMNS = ["graph", "id", "op", "target", "name"]


def main(argv: list) -> None:
    params = load_stage_params("compile_rknn", argv)
    npu = to_dict(params.npu)
    with atomic_dir(RKNN) as out:
        note = off_note(npu)
        if note:
            (out / "README.txt").write_text(note + "\n")
            write_manifest(out, "compile_rknn", {}, {ARTIFACT: note})
            metrics, layers, ops = {"target": npu["name"], "note": note}, [], []
        else:
            graphs = x3_graphs(BPU)
            metrics, layers, ops = compile_rknn(find_python(npu["toolkit_python"]), npu, graphs, CALIBRATION, out)
            write_manifest(out, "compile_rknn", rknn_artifacts(out, npu, graphs))
    write_csv(RKNN_LAYERS_TABLE, LAYER_COLUMNS, layers)
    write_csv(RKNN_OPS_TABLE, OP_COLUMNS, ops)
    write_json(RKNN_COMPILE_METRICS, metrics)
    print({k: v for k, v in metrics.items() if k != "config"})


if __name__ == "__main__":
    run_stage(main)
