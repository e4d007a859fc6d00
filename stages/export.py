"""export: cpu/ (WeNet runtime, + INT8), gpu/ (WeNet's Triton layout), sherpa/ ONNX models, each checked
against PyTorch; families a setting or model cannot have are skipped, and metrics/export.json says why.
exp/export/artifacts.json lists every family for the evaluation (edgeasr.artifact.manifest)."""

from pathlib import Path

import torch
from omegaconf import DictConfig

from edgeasr.cli import atomic_dir, run_stage, write_json
from edgeasr.decode import TorchBackend
from edgeasr.decode.onnx_backend import OnnxCpuBackend, OnnxGpuBackend, OnnxSherpaGraphBackend
from edgeasr.errors import EdgeAsrError
from edgeasr.artifact.manifest import write_manifest
from edgeasr.export.cpu import decoder_main_call, export_cpu
from edgeasr.export.families import export_artifacts
from edgeasr.export.gpu import export_gpu
from edgeasr.export.parity import check_within_tolerance, rescoring_agreement, worst_diffs
from edgeasr.export.sherpa import export_sherpa
from edgeasr.frontend.dataset import load_utterances
from edgeasr.model import ASRModel, load_model
from edgeasr.model.subsampling import min_input_frames
from edgeasr.params import check_streaming, load_stage_params
from edgeasr.paths import EXPORT, EXPORT_METRICS


def main(argv: list) -> None:
    params = load_stage_params("export", argv)
    check_streaming(params.streaming)
    torch.set_num_threads(1)
    model, _, _ = load_model(params.model.dir)
    with atomic_dir(EXPORT) as out:  # no exp/export unless every family passed its parity check
        report = export_and_check(model, out, params)
    write_json(EXPORT_METRICS, report)


def export_and_check(model: ASRModel, out: Path, params: DictConfig) -> dict:
    """Every family under `out`, each streamed against PyTorch; the report for metrics/export.json."""
    chunk, left = params.streaming.chunk_size, params.streaming.num_decoding_left_chunks
    search = params.compare
    moe = params.export.moe_form
    cpu = export_cpu(model, out / "cpu", chunk, left, params.export.opset, moe)
    gpu = export_gpu(model, out / "gpu", chunk, left, search.beam_size, search.ctc_weight, search.reverse_weight,
                     params.export.opset, moe)
    skipped = dict(gpu["skipped"])
    sherpa = None
    if left > 0:
        sherpa = export_sherpa(model, Path(model.provenance["units"]), out / "sherpa", chunk, left, params.export.opset,
                               moe)
    else:
        skipped["sherpa"] = f"streaming.num_decoding_left_chunks={left}: sherpa-onnx's WeNet model keeps a fixed cache"

    first_set = next(iter(params.data.test_sets.values()))
    utts = [u.feats for u in load_utterances(Path(first_set), params.export.parity_utts,
                                   min_input_frames(model.encoder.embed.right_context)).utterances]
    reference = TorchBackend(model)
    cpu_backend = OnnxCpuBackend(cpu["encoder"], cpu["ctc"], cpu["decoder"])
    gpu_backend = OnnxGpuBackend(gpu["offline_encoder"], gpu.get("streaming_encoder"), gpu.get("offline_decoder"))
    report = {
        "cpu": worst_diffs(reference, cpu_backend, utts, chunk, left),
        "gpu_offline": worst_diffs(reference, gpu_backend, utts, -1, -1),
    }
    if "streaming_encoder" in gpu:
        report["gpu_streaming"] = worst_diffs(reference, gpu_backend, utts, chunk, left)
    if sherpa is not None:
        report["sherpa"] = worst_diffs(reference, OnnxSherpaGraphBackend(sherpa["model"]), utts, chunk, left,
                                   ("ctc_log_probs",))
    for name, diffs in report.items():
        report[name] = {**diffs, "tolerance": check_within_tolerance(name, diffs)}
    # Quantized copies change numbers by design: measured here, judged by CER in eval_onnx.
    int8 = OnnxCpuBackend(cpu["encoder_int8"], cpu["ctc_int8"], cpu["decoder_int8"])
    report["cpu_int8"] = worst_diffs(reference, int8, utts, chunk, left)
    if model.decoder is not None:
        for name, backend in (("cpu", cpu_backend), ("gpu_offline", gpu_backend)):
            agreement = rescoring_agreement(reference, backend, utts, search.beam_size, search.ctc_weight,
                                            search.reverse_weight)
            if agreement < 1.0:
                raise EdgeAsrError(f"{name}: decoder.onnx picks a different rescored hypothesis than PyTorch")
            report[name]["rescoring_agreement"] = agreement
    report["skipped"] = skipped
    # The exact WeNet runtime command for each cpu folder (the paths as the workspace will hold them).
    report["wenet_decoder_main"] = {
        family: decoder_main_call(EXPORT / folder, Path(model.provenance["units"]), chunk, left, search.ctc_weight,
                                  search.reverse_weight, search.beam_size)
        for family, folder in (("cpu", cpu["encoder"].parent.name), ("cpu_int8", cpu["encoder_int8"].parent.name))}
    write_manifest(out, "export", export_artifacts(out, cpu, gpu, sherpa, report, model.decoder is not None, chunk, left),
                   skipped)
    report["size_mb"] = {
        str(path.relative_to(out)): round(path.stat().st_size / 1e6, 3) for path in sorted(out.rglob("*.onnx"))
    }
    return report


if __name__ == "__main__":
    run_stage(main)
