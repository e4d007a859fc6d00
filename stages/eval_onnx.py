"""eval_onnx: every exported family and the PyTorch model decoded alike (`compare.*`); sherpa-onnx on its model."""

from pathlib import Path

import torch

from edgeasr.cli import run_stage, write_json
from edgeasr.decode import TorchBackend
from edgeasr.decode.onnx_backend import OnnxCpuBackend, OnnxGpuBackend
from edgeasr.errors import EdgeAsrError
from edgeasr.evaluate.compare import decode_reference, evaluate_audio_recognizer, evaluate_family
from edgeasr.evaluate.contexts import decode_contexts
from edgeasr.evaluate.sherpa import SherpaRecognizer
from edgeasr.frontend.dataset import load_utterances
from edgeasr.frontend.tokens import id_to_token
from edgeasr.model import load_model
from edgeasr.model.subsampling import min_input_frames
from edgeasr.params import load_stage_params
from edgeasr.paths import EXPORT_CPU, EXPORT_GPU, EXPORT_SHERPA, ONNX_METRICS


def main(argv: list) -> None:
    params = load_stage_params("eval_onnx", argv)
    threads = params.compare.threads
    torch.set_num_threads(threads)
    model, _, symbols = load_model(params.model.dir)
    tokens = id_to_token(symbols)
    chunk, left = params.streaming.chunk_size, params.streaming.num_decoding_left_chunks
    contexts = decode_contexts(params.compare, params.streaming)
    cpu, gpu = EXPORT_CPU, EXPORT_GPU
    if not (cpu / "encoder.onnx").is_file():
        raise EdgeAsrError(f"{cpu}: no encoder.onnx (run `dvc repro export` first)")
    streaming_encoder = gpu / "streaming" / "encoder.onnx"
    gpu_decoder = gpu / "offline" / "decoder.onnx"
    gpu_backend = OnnxGpuBackend(gpu / "offline" / "encoder.onnx",
                                 streaming_encoder if streaming_encoder.is_file() else None,
                                 gpu_decoder if gpu_decoder.is_file() else None, threads)
    families = {
        "cpu": (OnnxCpuBackend(cpu / "encoder.onnx", cpu / "ctc.onnx", cpu / "decoder.onnx", threads), "streaming"),
        "cpu_int8": (OnnxCpuBackend(cpu / "encoder.int8.onnx", cpu / "ctc.int8.onnx", cpu / "decoder.int8.onnx",
                                    threads), "streaming"),
        "gpu_offline": (gpu_backend, "full"),
    }
    if streaming_encoder.is_file():  # absent where the export said why (metrics/export.json, skipped)
        families["gpu_streaming"] = (gpu_backend, "streaming")
    sherpa = {}
    if (EXPORT_SHERPA / "model.onnx").is_file():
        sherpa = {
            "sherpa": SherpaRecognizer(EXPORT_SHERPA, chunk, left, threads, wenet_frontend=True),
            "sherpa_default_frontend": SherpaRecognizer(EXPORT_SHERPA, chunk, left, threads, wenet_frontend=False),
        }
    pytorch = TorchBackend(model, reverse_weight=params.compare.reverse_weight)
    metrics = {}
    for name, data_list in params.data.test_sets.items():
        prepared = load_utterances(Path(data_list), params.compare.max_utts, min_input_frames(model.encoder.embed.right_context)).utterances
        reference = decode_reference(pytorch, prepared, contexts, tokens)
        metrics[name] = {"pytorch": dict(reference.metrics)}  # what every cer_delta here is measured from
        for family, (backend, ctx) in families.items():
            metrics[name][family] = evaluate_family(backend, prepared, contexts[ctx], ctx, tokens, reference,
                                                    family)
        for family, recognizer in sherpa.items():
            metrics[name][family] = evaluate_audio_recognizer(recognizer.transcribe, prepared, reference, family)
    write_json(ONNX_METRICS, metrics)


if __name__ == "__main__":
    run_stage(main)
