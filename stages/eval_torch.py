"""eval_torch: the PyTorch baseline, every test set streamed and at full context, every decoding mode."""


import torch

from edgeasr.cli import run_stage, write_json
from edgeasr.decode import TorchBackend
from edgeasr.evaluate.runner import decode_contexts, evaluate_sets
from edgeasr.model import load_model
from edgeasr.params import load_stage_params
from edgeasr.paths import EVAL_TORCH, TORCH_METRICS


def main(argv: list) -> None:
    p = load_stage_params("eval_torch", argv)
    torch.set_num_threads(p.eval.threads)
    model, _, symbols = load_model(p.model.dir)
    backend = TorchBackend(model, reverse_weight=p.eval.reverse_weight)
    metrics = evaluate_sets(backend, dict(p.data.test_sets), decode_contexts(p.eval, p.streaming), symbols,
                            p.eval.max_utts, EVAL_TORCH)
    write_json(TORCH_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
