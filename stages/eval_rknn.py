"""eval_rknn: with npu=rk3588, the RK3588 models compile_rknn listed (its manifest) streamed in
rknn-toolkit2's simulator over the test sets, scored against the PyTorch reference (`compare.*`, CTC
modes), with the cosine to the float graphs and the simulator's time (not the chip's)."""

from edgeasr.artifact.manifest import read_manifest
from edgeasr.cli import atomic_dir, fresh_dir, run_stage, write_json
from edgeasr.evaluate.artifacts import evaluate_manifest
from edgeasr.evaluate.engine import compute_engine
from edgeasr.params import load_stage_params, to_dict
from edgeasr.paths import EVAL_TORCH, RKNN, RKNN_HYPS, RKNN_METRICS, RKNN_SIMULATION
from edgeasr.rknn.compile import TARGET, off_note
from edgeasr.rknn.simulate import simulator_opener
from edgeasr.rknn.toolkit import find_python


def main(argv: list) -> None:
    params = load_stage_params("eval_rknn", argv)
    npu = to_dict(params.npu)
    logs = fresh_dir(RKNN_SIMULATION)
    with atomic_dir(RKNN_HYPS) as hyps:
        note = off_note(npu)
        if note:
            (logs / "README.txt").write_text(note + "\n")
            write_json(RKNN_METRICS, {"target": npu["name"], "note": note})
            return
        # NOTE: the simulator is a process of its own (rknn-toolkit2's environment): it runs beside this
        # stage, not on the engine's workers.
        opener = simulator_opener(find_python(npu["toolkit_python"]), logs)
        with compute_engine() as (engine, cache):
            metrics = evaluate_manifest(read_manifest(RKNN), EVAL_TORCH, params.data.test_sets, params.compare,
                                        params.streaming, hyps, engine, cache, {"rknn_simulator": opener})
    write_json(RKNN_METRICS, {"target": TARGET, **metrics})


if __name__ == "__main__":
    run_stage(main)
