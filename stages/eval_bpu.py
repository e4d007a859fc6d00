"""eval_bpu: the X3 float graphs (export_bpu's manifest) streamed like the board runtime, exact and as
the runtime does today, scored against the PyTorch reference (`compare.*`, CTC modes); without the
X3 chosen, a note."""

from edgeasr.artifact.manifest import read_manifest
from edgeasr.cli import atomic_dir, run_stage, write_json, write_off_outputs
from edgeasr.evaluate.artifacts import evaluate_manifest
from edgeasr.evaluate.engine import compute_engine
from edgeasr.params import load_stage_params
from edgeasr.paths import BPU, BPU_HYPS, BPU_METRICS, EVAL_TORCH
from edgeasr.targets import off_note


def main(argv: list) -> None:
    params = load_stage_params("eval_bpu", argv)
    note = off_note("eval_bpu", params.npu)
    if note:
        write_off_outputs(note, [BPU_HYPS], [BPU_METRICS])
        return
    with compute_engine() as (engine, cache), atomic_dir(BPU_HYPS) as hyps:
        metrics = evaluate_manifest(read_manifest(BPU), EVAL_TORCH, params.data.test_sets, params.compare,
                                    params.streaming, hyps, engine, cache)
    write_json(BPU_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
