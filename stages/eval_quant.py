"""eval_quant: the quantized X3 graphs streamed over the test sets; CER vs PyTorch (`compare.*`), cosine vs float."""

from pathlib import Path

import torch

from edgeasr.bpu.compile import quantized_path, read_manifest
from edgeasr.cli import run_stage, write_json
from edgeasr.decode import TorchBackend
from edgeasr.decode.bpu_backend import OnnxBpuBackend
from edgeasr.errors import EdgeAsrError
from edgeasr.evaluate.compare import decode_reference, evaluate_family
from edgeasr.evaluate.quant import stream_cosine
from edgeasr.evaluate.contexts import decode_contexts
from edgeasr.frontend.dataset import load_utterances
from edgeasr.frontend.tokens import id_to_token
from edgeasr.model import load_model
from edgeasr.model.subsampling import min_input_frames
from edgeasr.params import load_stage_params
from edgeasr.paths import BPU, COMPILE, QUANT_METRICS

CTC_MODES = ("ctc_greedy", "ctc_prefix_beam")


def main(argv: list) -> None:
    params = load_stage_params("eval_quant", argv)
    torch.set_num_threads(params.compare.threads)  # the PyTorch reference decodes here too; RTF at this count
    compiled = read_manifest(COMPILE)
    if compiled["mode"] != "emulated":
        raise EdgeAsrError(f"{COMPILE}: compiled by hb_mapper, whose quantized models run only in Horizon's own "
                           "HB_ONNXRuntime or on the board; edgeasr evaluates the emulated ones")
    model, _, symbols = load_model(params.model.dir)
    tokens = id_to_token(symbols)
    opts = decode_contexts(params.compare, params.streaming, CTC_MODES, full_context=False)["streaming"]
    quant = OnnxBpuBackend(quantized_path(COMPILE, "encoder"), quantized_path(COMPILE, "ctc"), "exact",
                           params.compare.threads)
    float_graphs = OnnxBpuBackend(BPU / "encoder.onnx", BPU / "ctc.onnx", "exact", params.compare.threads)
    pytorch = TorchBackend(model)
    metrics = {"mode": compiled["mode"], "worst_nodes": compiled["worst_nodes"]}
    for name, data_list in params.data.test_sets.items():
        prepared = load_utterances(Path(data_list), params.compare.max_utts, min_input_frames(model.encoder.embed.right_context)).utterances
        reference = decode_reference(pytorch, prepared, {"streaming": opts}, tokens)
        result = evaluate_family(quant, prepared, opts, "streaming", tokens, reference, "quantized")
        result.update(stream_cosine(float_graphs, quant, prepared, opts))
        metrics[name] = result
    write_json(QUANT_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
