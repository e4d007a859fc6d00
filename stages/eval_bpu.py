"""eval_bpu: the X3 float graphs streamed over the test sets like the board runtime; CER vs PyTorch (`compare.*`)."""

from pathlib import Path

import torch

from edgeasr.cli import run_stage, write_json
from edgeasr.decode import TorchBackend
from edgeasr.decode.bpu_backend import OnnxBpuBackend
from edgeasr.evaluate.compare import decode_reference, evaluate_family
from edgeasr.evaluate.contexts import decode_contexts
from edgeasr.frontend.dataset import load_utterances
from edgeasr.frontend.tokens import id_to_token
from edgeasr.model import load_model
from edgeasr.model.subsampling import min_input_frames
from edgeasr.params import load_stage_params
from edgeasr.paths import BPU, BPU_METRICS

CTC_MODES = ("ctc_greedy", "ctc_prefix_beam")  # the board runtime has no attention decoder


def main(argv: list) -> None:
    params = load_stage_params("eval_bpu", argv)
    torch.set_num_threads(params.compare.threads)  # the PyTorch reference decodes here too; RTF at this count
    model, _, symbols = load_model(params.model.dir)
    tokens = id_to_token(symbols)
    contexts = decode_contexts(params.compare, params.streaming, CTC_MODES, full_context=False)
    backends = {  # family -> (backend, frames align with PyTorch's)
        "bpu_float": (OnnxBpuBackend(BPU / "encoder.onnx", BPU / "ctc.onnx", "exact", params.compare.threads), True),
        "bpu_float_board": (OnnxBpuBackend(BPU / "encoder.onnx", BPU / "ctc.onnx", "board", params.compare.threads), False),
    }
    pytorch = TorchBackend(model)
    metrics = {}
    for name, data_list in params.data.test_sets.items():
        prepared = load_utterances(Path(data_list), params.compare.max_utts, min_input_frames(model.encoder.embed.right_context)).utterances
        reference = decode_reference(pytorch, prepared, contexts, tokens)
        metrics[name] = {
            family: evaluate_family(backend, prepared, contexts["streaming"], "streaming", tokens, reference,
                                    family, frames_align=aligned)
            for family, (backend, aligned) in backends.items()
        }
    write_json(BPU_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
