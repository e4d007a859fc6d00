"""One comparable row per test set and artifact (streaming, CTC greedy), for tables and plots.

Every artifact is measured against the PyTorch reference decoded alike (`compare.*`, same chunk
settings); these rows put them side by side: CER, CER minus PyTorch, real-time factor, compute per
chunk. The PyTorch row is the reference itself (metrics/torch.json), the one the deltas are measured
from.
"""

from pathlib import Path
from typing import Dict, List, Mapping, Tuple

from ..paths import BPU_METRICS, ONNX_METRICS, QUANT_METRICS, RKNN_METRICS

MODE = "ctc_greedy"  # the one search every artifact runs (the NPU graphs have no attention decoder)

# label -> (its stage's metrics file, its entry in each test set): the artifacts shown beside PyTorch's
# in summary.csv and in the sweep report (report.sweep), where their stage evaluated them
ARTIFACT_METRICS: Dict[str, Tuple[Path, str]] = {
    "onnx_cpu": (ONNX_METRICS, "cpu"),
    "bpu_float": (BPU_METRICS, "bpu_float"),
    "quantized": (QUANT_METRICS, "quantized"),
    "rk3588_float": (RKNN_METRICS, "rk3588_float"),
    "rk3588_int8": (RKNN_METRICS, "rk3588_int8"),
}


def _row(test_set: str, artifact: str, family: Mapping[str, object], chunk: int, left: int) -> Dict[str, object]:
    return {
        "set": test_set,
        "artifact": artifact,
        "label": f"{test_set}/{artifact}",
        "chunk_size": chunk,
        "left_chunks": left,
        "cer": family[MODE]["cer"],
        "cer_delta": family[MODE].get("cer_delta", 0.0),
        "rtf": family.get("rtf"),  # None for the RK3588 simulator: its speed is not the chip's
        "chunk_compute_ms": family.get("chunk_compute_ms"),
    }


def summary_rows(torch: Mapping, evaluations: Mapping[Path, Mapping], chunk: int, left: int) -> List[dict]:
    """Rows for pytorch and every artifact of ARTIFACT_METRICS on every test set of metrics/torch.json;
    `evaluations` maps each metrics file of ARTIFACT_METRICS to its content. A stage that was off (a
    target not chosen: its metrics hold a note) has no rows."""
    rows = []
    for test_set in torch:
        rows.append(_row(test_set, "pytorch", torch[test_set]["streaming"], chunk, left))
        for label, (path, entry) in ARTIFACT_METRICS.items():
            metrics = evaluations[path]
            if "note" not in metrics:
                rows.append(_row(test_set, label, metrics[test_set][entry], chunk, left))
    return rows
