"""eval_onnx: every exported family decoded like eval_torch and compared with it; sherpa-onnx on its model."""

import json
from pathlib import Path

import torch

from edgeasr.cli import run_stage
from edgeasr.decode import DecodeOptions, TorchBackend
from edgeasr.decode.onnx_backend import OnnxCpuBackend, OnnxGpuBackend
from edgeasr.evaluate.compare import evaluate_audio_recognizer, evaluate_family, read_hyps, reference_log_probs
from edgeasr.evaluate.runner import prepare, write_json
from edgeasr.evaluate.sherpa import SherpaRecognizer
from edgeasr.model import load_model
from edgeasr.params import load_stage_params

EXPORT = Path("exp/export")


def main(argv: list) -> None:
    p = load_stage_params("eval_onnx", argv)
    torch.set_num_threads(p.eval.threads)
    model, _, symbols = load_model(p.model.dir)
    id_to_token = {i: t for t, i in symbols.items()}
    chunk, left = p.streaming.chunk_size, p.streaming.num_decoding_left_chunks
    search = dict(beam_size=p.eval.beam_size, ctc_weight=p.eval.ctc_weight, reverse_weight=p.eval.reverse_weight,
                  modes=tuple(p.eval.modes))
    contexts = {"streaming": DecodeOptions(chunk, left, **search), "full": DecodeOptions(-1, -1, **search)}
    cpu, gpu = EXPORT / "cpu", EXPORT / "gpu"
    has_decoder = (cpu / "decoder.onnx").exists()
    gpu_backend = OnnxGpuBackend(gpu / "encoder.onnx", gpu / "encoder_streaming.onnx",
                                 gpu / "decoder.onnx" if has_decoder else None, p.eval.threads)
    families = {
        "cpu": (OnnxCpuBackend(cpu / "encoder.onnx", cpu / "ctc.onnx", cpu / "decoder.onnx" if has_decoder else None,
                               p.eval.threads), "streaming"),
        "cpu_int8": (OnnxCpuBackend(cpu / "encoder.int8.onnx", cpu / "ctc.int8.onnx",
                                    cpu / "decoder.int8.onnx" if has_decoder else None, p.eval.threads), "streaming"),
        "gpu_streaming": (gpu_backend, "streaming"),
        "gpu_offline": (gpu_backend, "full"),
    }
    sherpa = {
        "sherpa": SherpaRecognizer(EXPORT / "sherpa", chunk, left, p.eval.threads, wenet_frontend=True),
        "sherpa_default_frontend": SherpaRecognizer(EXPORT / "sherpa", chunk, left, p.eval.threads, wenet_frontend=False),
    }
    reference = TorchBackend(model, reverse_weight=p.eval.reverse_weight)
    baseline = json.loads(Path("metrics/torch.json").read_text())
    metrics = {}
    for name, data_list in p.data.test_sets.items():
        prepared = prepare(Path(data_list), p.eval.max_utts)
        baseline_hyps = read_hyps(Path("exp/eval_torch") / f"{name}.jsonl")
        ref_log_probs = {ctx: reference_log_probs(reference, prepared, opts) for ctx, opts in contexts.items()}
        metrics[name] = {
            family: evaluate_family(backend, prepared, contexts[ctx], ctx, id_to_token, ref_log_probs[ctx],
                                    baseline_hyps, baseline[name], family)
            for family, (backend, ctx) in families.items()
        }
        for family, recognizer in sherpa.items():
            metrics[name][family] = evaluate_audio_recognizer(
                recognizer.transcribe, prepared, baseline_hyps, baseline[name], family
            )
    write_json(Path("metrics/onnx.json"), metrics)


if __name__ == "__main__":
    run_stage(main)
