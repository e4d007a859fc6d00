"""eval_torch: the PyTorch baseline, every test set streamed and at full context, every decoding mode."""


import torch

from edgeasr.cli import run_stage, write_json
from edgeasr.decode import TorchBackend
from edgeasr.evaluate.contexts import decode_contexts
from edgeasr.evaluate.runner import evaluate_sets
from edgeasr.model import load_model
from edgeasr.params import load_stage_params
from edgeasr.paths import EVAL_TORCH, TORCH_METRICS


def main(argv: list) -> None:
    params = load_stage_params("eval_torch", argv)
    torch.set_num_threads(params.eval.threads)
    model, _, symbols = load_model(params.model.dir)
    backend = TorchBackend(model, reverse_weight=params.eval.reverse_weight)
    metrics = evaluate_sets(backend, dict(params.data.test_sets), decode_contexts(params.eval, params.streaming), symbols,
                            params.eval.max_utts, EVAL_TORCH)
    write_json(TORCH_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
