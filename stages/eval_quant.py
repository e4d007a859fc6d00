"""eval_quant: the quantized X3 graphs streamed over the test sets; CER vs PyTorch, cosine vs float."""

import json
from pathlib import Path

from edgeasr.bpu.compile import quantized_path
from edgeasr.cli import run_stage
from edgeasr.decode import DecodeOptions, TorchBackend
from edgeasr.decode.bpu_backend import OnnxBpuBackend
from edgeasr.errors import EdgeAsrError
from edgeasr.evaluate.compare import evaluate_family, read_hyps, reference_log_probs
from edgeasr.evaluate.quant import stream_cosine
from edgeasr.evaluate.runner import prepare, write_json
from edgeasr.model import load_model
from edgeasr.params import load_stage_params

CTC_MODES = ("ctc_greedy", "ctc_prefix_beam")
BPU, COMPILED = Path("exp/bpu"), Path("exp/compile")


def main(argv: list) -> None:
    p = load_stage_params("eval_quant", argv)
    compiled = json.loads(Path("metrics/compile.json").read_text())
    if compiled["mode"] != "emulated":
        raise EdgeAsrError("metrics/compile.json: hb_mapper's quantized models run only in Horizon's own "
                           "HB_ONNXRuntime or on the board; edgeasr evaluates the emulated ones")
    model, _, symbols = load_model(p.model.dir)
    id_to_token = {i: t for t, i in symbols.items()}
    opts = DecodeOptions(p.streaming.chunk_size, p.streaming.num_decoding_left_chunks, beam_size=p.eval.beam_size,
                         modes=tuple(m for m in p.eval.modes if m in CTC_MODES))
    quant = OnnxBpuBackend(quantized_path(COMPILED, "encoder"), quantized_path(COMPILED, "ctc"), "exact",
                           p.eval.threads)
    float_graphs = OnnxBpuBackend(BPU / "encoder.onnx", BPU / "ctc.onnx", "exact", p.eval.threads)
    reference = TorchBackend(model)
    baseline = json.loads(Path("metrics/torch.json").read_text())
    metrics = {"mode": compiled["mode"], "worst_nodes": compiled["worst_nodes"]}
    for name, data_list in p.data.test_sets.items():
        prepared = prepare(Path(data_list), p.eval.max_utts)
        result = evaluate_family(quant, prepared, opts, "streaming", id_to_token,
                                 reference_log_probs(reference, prepared, opts),
                                 read_hyps(Path("exp/eval_torch") / f"{name}.jsonl"), baseline[name], "quantized")
        result.update(stream_cosine(float_graphs, quant, prepared, opts))
        metrics[name] = result
    write_json(Path("metrics/quant.json"), metrics)


if __name__ == "__main__":
    run_stage(main)
