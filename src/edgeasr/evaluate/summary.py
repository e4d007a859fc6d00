"""One comparable row per test set and artifact (streaming, CTC greedy), for tables and plots.

Every artifact is measured against the PyTorch reference decoded alike (`compare.*`, same chunk
settings); these rows put them side by side: CER, CER minus PyTorch, real-time factor, compute per
chunk. The PyTorch row is the reference itself (metrics/torch.json), the one the deltas are measured
from.
"""

from typing import Dict, List, Mapping

MODE = "ctc_greedy"  # the one search every artifact runs (the X3 graphs have no attention decoder)


# (metrics file, its artifact entry, row label): the rows beside PyTorch's, where that stage evaluated
ROWS = (("onnx", "cpu", "onnx_cpu"), ("bpu", "bpu_float", "bpu_float"), ("quant", "quantized", "quantized"),
        ("rknn", "rk3588_int8", "rk3588_int8"))


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


def summary_rows(torch: Mapping, evaluations: Mapping[str, Mapping], chunk: int, left: int) -> List[dict]:
    """Rows for pytorch and every artifact of ROWS on every test set of metrics/torch.json;
    `evaluations` maps each metrics file of ROWS to its content. A stage that was off (a target not
    chosen: its metrics hold a note) has no rows."""
    rows = []
    for test_set in torch:
        rows.append(_row(test_set, "pytorch", torch[test_set]["streaming"], chunk, left))
        for key, entry, label in ROWS:
            metrics = evaluations[key]
            if "note" not in metrics:
                rows.append(_row(test_set, label, metrics[test_set][entry], chunk, left))
    return rows
