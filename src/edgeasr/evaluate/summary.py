"""One comparable row per test set and artifact (streaming, CTC greedy), for tables and plots.

Every artifact is measured against the PyTorch reference decoded alike (`compare.*`, same chunk
settings); these rows put them side by side: CER, CER minus PyTorch, real-time factor, compute per
chunk. The PyTorch row is the reference itself (metrics/torch.json), the one the deltas are measured
from.
"""

from typing import Dict, List, Mapping

MODE = "ctc_greedy"  # the one search every artifact runs (the X3 graphs have no attention decoder)


def _row(test_set: str, artifact: str, family: Mapping[str, object], chunk: int, left: int) -> Dict[str, object]:
    return {
        "set": test_set,
        "artifact": artifact,
        "label": f"{test_set}/{artifact}",
        "chunk_size": chunk,
        "left_chunks": left,
        "cer": family[MODE]["cer"],
        "cer_delta": family[MODE].get("cer_delta", 0.0),
        "rtf": family["rtf"],
        "chunk_compute_ms": family.get("chunk_compute_ms"),
    }


def summary_rows(torch: Mapping, onnx: Mapping, bpu: Mapping, quant: Mapping, chunk: int, left: int) -> List[dict]:
    """Rows for pytorch, onnx_cpu, bpu_float and quantized on every test set of metrics/torch.json."""
    rows = []
    for test_set in torch:
        rows.append(_row(test_set, "pytorch", torch[test_set]["streaming"], chunk, left))
        rows.append(_row(test_set, "onnx_cpu", onnx[test_set]["cpu"], chunk, left))
        rows.append(_row(test_set, "bpu_float", bpu[test_set]["bpu_float"], chunk, left))
        rows.append(_row(test_set, "quantized", quant[test_set]["quantized"], chunk, left))
    return rows
