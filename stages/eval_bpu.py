"""eval_bpu: the X3 float graphs streamed over the test sets like the board runtime; CER vs PyTorch."""

import json
from pathlib import Path

from edgeasr.cli import run_stage
from edgeasr.decode import DecodeOptions, TorchBackend
from edgeasr.decode.bpu_backend import OnnxBpuBackend
from edgeasr.evaluate.compare import evaluate_family, read_hyps, reference_log_probs
from edgeasr.evaluate.runner import prepare, write_json
from edgeasr.model import load_model
from edgeasr.params import load_stage_params

CTC_MODES = ("ctc_greedy", "ctc_prefix_beam")  # the board runtime has no attention decoder
BPU = Path("exp/bpu")


def main(argv: list) -> None:
    p = load_stage_params("eval_bpu", argv)
    model, _, symbols = load_model(p.model.dir)
    id_to_token = {i: t for t, i in symbols.items()}
    opts = DecodeOptions(p.streaming.chunk_size, p.streaming.num_decoding_left_chunks, beam_size=p.eval.beam_size,
                         modes=tuple(m for m in p.eval.modes if m in CTC_MODES))
    backends = {  # family -> (backend, frames align with PyTorch's)
        "bpu_float": (OnnxBpuBackend(BPU / "encoder.onnx", BPU / "ctc.onnx", "exact", p.eval.threads), True),
        "bpu_float_board": (OnnxBpuBackend(BPU / "encoder.onnx", BPU / "ctc.onnx", "board", p.eval.threads), False),
    }
    reference = TorchBackend(model)
    baseline = json.loads(Path("metrics/torch.json").read_text())
    metrics = {}
    for name, data_list in p.data.test_sets.items():
        prepared = prepare(Path(data_list), p.eval.max_utts)
        baseline_hyps = read_hyps(Path("exp/eval_torch") / f"{name}.jsonl")
        ref = reference_log_probs(reference, prepared, opts)
        metrics[name] = {
            family: evaluate_family(backend, prepared, opts, "streaming", id_to_token, ref if aligned else None,
                                    baseline_hyps, baseline[name], family)
            for family, (backend, aligned) in backends.items()
        }
    write_json(Path("metrics/bpu.json"), metrics)


if __name__ == "__main__":
    run_stage(main)
