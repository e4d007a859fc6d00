"""eval_onnx: every ONNX family export wrote (its manifest), scored against the PyTorch reference
(exp/eval_torch, `compare.*`); sherpa-onnx's own runtime on its model."""

from edgeasr.artifact.manifest import read_manifest
from edgeasr.cli import atomic_dir, run_stage, write_json
from edgeasr.evaluate.artifacts import evaluate_manifest
from edgeasr.evaluate.engine import compute_engine
from edgeasr.params import load_stage_params
from edgeasr.paths import EVAL_TORCH, EXPORT, ONNX_HYPS, ONNX_METRICS


def main(argv: list) -> None:
    params = load_stage_params("eval_onnx", argv)
    with compute_engine() as (engine, cache), atomic_dir(ONNX_HYPS) as hyps:
        metrics = evaluate_manifest(read_manifest(EXPORT), EVAL_TORCH, params.data.test_sets, params.compare,
                                    params.streaming, hyps, engine, cache)
    write_json(ONNX_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
