"""eval_quant: the quantized X3 graphs compile wrote (its manifest: the emulation's, or hb_mapper's
quantized ONNX; hb_mapper's .bin is listed as not runnable here), scored against the PyTorch reference
(`compare.*`, CTC modes), with the cosine to the float graphs; without the X3 chosen, a note."""

from edgeasr.artifact.manifest import read_manifest
from edgeasr.cli import atomic_dir, run_stage, write_json, write_off_outputs
from edgeasr.evaluate.artifacts import evaluate_manifest
from edgeasr.evaluate.engine import compute_engine
from edgeasr.params import load_stage_params
from edgeasr.paths import COMPILE, EVAL_TORCH, QUANT_HYPS, QUANT_METRICS
from edgeasr.targets import off_note


def main(argv: list) -> None:
    params = load_stage_params("eval_quant", argv)
    note = off_note("eval_quant", params.npu)
    if note:
        write_off_outputs(note, [QUANT_HYPS], [QUANT_METRICS])
        return
    compiled = read_manifest(COMPILE)
    with compute_engine() as (engine, cache), atomic_dir(QUANT_HYPS) as hyps:
        metrics = evaluate_manifest(compiled, EVAL_TORCH, params.data.test_sets, params.compare, params.streaming, hyps,
                                    engine, cache)
    write_json(QUANT_METRICS, {"mode": compiled.info["mode"], "worst_nodes": compiled.info["worst_nodes"], **metrics})


if __name__ == "__main__":
    run_stage(main)
