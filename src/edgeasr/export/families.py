"""The export stage's manifest entries: one per ONNX family it wrote, with what an evaluation needs.

    cpu, cpu_int8           WeNet's C++ onnxruntime runtime (cpu/), streamed at the exported chunk
    gpu_streaming           WeNet's Triton streaming encoder (gpu/streaming/), where the model streams there
    gpu_offline             WeNet's Triton offline encoder + rescoring decoder (gpu/offline/), full context
    sherpa, sherpa_default_frontend
                            sherpa-onnx's own C++ runtime on sherpa/model.onnx, with WeNet's front end
                            and with sherpa-onnx's default one
"""

from pathlib import Path
from typing import Dict, Mapping, Optional

from ..artifact.manifest import ALL_MODES, CTC_MODES, Artifact
from .parity import FLOAT_TOLERANCE

EXPORTED = "export (PyTorch -> ONNX, float32)"


def export_artifacts(out: Path, cpu: Mapping[str, Path], gpu: Mapping[str, object], sherpa: Optional[Mapping[str, Path]],
                     report: Mapping[str, Mapping[str, float]], has_decoder: bool, chunk: int, left: int
                     ) -> Dict[str, Artifact]:
    """Manifest entries for the families under `out`; `report` holds each family's measured parity."""
    def rel(path: object) -> str:
        return str(Path(str(path)).relative_to(out))

    def parity(name: str) -> Dict[str, float]:
        return {k: v for k, v in report[name].items() if k in FLOAT_TOLERANCE}

    def tolerance(name: str) -> Dict[str, float]:
        return {k: FLOAT_TOLERANCE[k] for k in parity(name)}

    modes = ALL_MODES if has_decoder else CTC_MODES
    artifacts = {
        "cpu": Artifact("onnx_cpu", {"encoder": rel(cpu["encoder"]), "ctc": rel(cpu["ctc"]), "decoder": rel(cpu["decoder"])},
                        "streaming", modes, True, EXPORTED, tolerance=tolerance("cpu"), parity=parity("cpu")),
        # NOTE: INT8 copies change numbers by design: their parity is measured, and judged by CER.
        "cpu_int8": Artifact("onnx_cpu", {"encoder": rel(cpu["encoder_int8"]), "ctc": rel(cpu["ctc_int8"]),
                                          "decoder": rel(cpu["decoder_int8"])},
                             "streaming", modes, True, "onnxruntime dynamic INT8 of the cpu family",
                             parity=parity("cpu_int8")),
    }
    offline = {"encoder": rel(gpu["offline_encoder"])}
    if "offline_decoder" in gpu:
        offline["decoder"] = rel(gpu["offline_decoder"])
    if "streaming_encoder" in gpu:
        streaming = {"streaming_encoder": rel(gpu["streaming_encoder"])}
        if "streaming_decoder" in gpu:
            streaming["decoder"] = rel(gpu["streaming_decoder"])
        artifacts["gpu_streaming"] = Artifact("onnx_gpu", streaming, "streaming", modes, True, EXPORTED,
                                              tolerance=tolerance("gpu_streaming"), parity=parity("gpu_streaming"))
    artifacts["gpu_offline"] = Artifact("onnx_gpu", offline, "full", modes, True, EXPORTED,
                                        tolerance=tolerance("gpu_offline"), parity=parity("gpu_offline"))
    if sherpa is not None:
        files = {"model": rel(sherpa["model"]), "tokens": rel(sherpa["tokens"])}
        for name, wenet_frontend in (("sherpa", True), ("sherpa_default_frontend", False)):
            front = "WeNet's front end" if wenet_frontend else "sherpa-onnx's default front end"
            artifacts[name] = Artifact(
                "sherpa_onnx", files, "streaming", ("ctc_greedy",), False, f"{EXPORTED}, run by sherpa-onnx with {front}",
                options={"chunk_size": chunk, "num_left_chunks": left, "wenet_frontend": wenet_frontend},
                tolerance=tolerance("sherpa"), parity=parity("sherpa"))
    return artifacts
