"""eval_rknn: with npu.rk3588 on, the RK3588 graph compile_rknn listed (its manifest) streamed in
rknn-toolkit2's simulator over the test sets, and its float original (export_rknn's manifest) on
onnxruntime, scored against the PyTorch reference (`compare.*`, CTC modes), with the compiled graph's
cosine to the float one and the simulator's time (not the chip's); without the RK3588 chosen, a note."""

from edgeasr.artifact.manifest import read_manifest
from edgeasr.cli import atomic_dir, fresh_dir, run_stage, write_json, write_off_outputs
from edgeasr.evaluate.artifacts import evaluate_manifest
from edgeasr.evaluate.engine import compute_engine
from edgeasr.params import load_stage_params
from edgeasr.paths import EVAL_TORCH, RKNN, RKNN_EXPORT, RKNN_HYPS, RKNN_METRICS, RKNN_SIMULATION
from edgeasr.rknn.simulate import simulator_opener
from edgeasr.rknn.toolkit import find_python
from edgeasr.targets import off_note


def main(argv: list) -> None:
    params = load_stage_params("eval_rknn", argv)
    note = off_note("eval_rknn", params.npu)
    if note:
        write_off_outputs(note, [RKNN_SIMULATION, RKNN_HYPS], [RKNN_METRICS])
        return
    logs = fresh_dir(RKNN_SIMULATION)
    # NOTE: the simulator is a process of its own (rknn-toolkit2's environment): every engine worker
    # starts one beside itself, so the utterances' shards are simulated in parallel.
    opener = simulator_opener(find_python(params.rknn.toolkit_python), logs)
    metrics: dict = {"target": params.rknn.name}
    with compute_engine() as (engine, cache), atomic_dir(RKNN_HYPS) as hyps:
        for folder in (RKNN_EXPORT, RKNN):
            found = evaluate_manifest(read_manifest(folder), EVAL_TORCH, params.data.test_sets, params.compare,
                                      params.streaming, hyps, engine, cache, {"rknn_simulator": opener})
            for key, value in found.items():  # produced_by, not_evaluated and each set: {artifact: ...}
                metrics.setdefault(key, {}).update(value)
    write_json(RKNN_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
