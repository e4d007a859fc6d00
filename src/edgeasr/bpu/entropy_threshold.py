"""onnxruntime's Entropy (KL) calibration thresholds, computed with array operations.

onnxruntime's `HistogramCollector.get_entropy_threshold` merges and expands the histogram bins in
Python loops (built-in `sum` over NumPy slices): on the demo_moe encoder's 859 tensors it took 240 s
of the 296-s compile stage. `entropy_threshold` is the same search with each candidate's merge and
expansion done by reshapes; the smoothing and the KL divergence are onnxruntime's own functions,
so the divergences, and the threshold chosen, are the same numbers (tests compare the two on
histograms collected by onnxruntime).

Per candidate half-width i (num_quantized_bins // 2 .. num_bins // 2 bins around zero), as
onnxruntime does it:
    p   the slice of the histogram, the outliers on each side added to its first / last bin;
    q   the slice (outliers not added) merged into num_quantized_bins groups of len // nq bins (the
        remainder into the last group), each group's count spread evenly (integer division) over
        the group's bins that are non-zero in p, zero where the group has none; the remainder bins
        stay zero;
    KL(smooth(p) || smooth(q)); the threshold with the smallest KL, clipped to the data's min / max.
"""

from typing import Dict, Tuple

import numpy as np
from onnxruntime.quantization.calibrate import entropy
from onnxruntime.quantization.quant_utils import smooth_distribution


def candidate_divergence(hist: np.ndarray, start: int, end: int, num_quantized_bins: int) -> float:
    """KL divergence of quantizing hist[start:end] (outliers folded in) to num_quantized_bins bins."""
    sliced = hist[start:end]
    p = sliced.copy()
    p[0] += hist[:start].sum()
    p[-1] += hist[end:].sum()
    merged = sliced.size // num_quantized_bins
    body = num_quantized_bins * merged
    counts = sliced[:body].reshape(num_quantized_bins, merged).sum(axis=1)
    counts[-1] += sliced[body:].sum()
    norm = (p[:body] != 0).reshape(num_quantized_bins, merged).sum(axis=1)
    spread = np.zeros(num_quantized_bins, dtype=np.int64)
    nonempty = norm != 0
    spread[nonempty] = (counts[nonempty] / norm[nonempty]).astype(np.int64)  # onnxruntime's int64 store
    q = np.zeros(p.size, dtype=np.int64)
    q[:body] = np.repeat(spread, merged)
    p_smooth, q_smooth = smooth_distribution(p), smooth_distribution(q)
    if p_smooth is None or q_smooth is None:
        return float(np.inf)
    return float(np.float32(entropy(p_smooth, q_smooth)))


def entropy_threshold(histogram: Tuple[np.ndarray, ...], num_quantized_bins: int) -> Tuple[np.ndarray, np.ndarray]:
    """(low, high) for one tensor from its collected (hist, edges, min, max, ...) histogram."""
    hist, edges, min_value, max_value = histogram[:4]
    zero_bin = hist.size // 2
    half = num_quantized_bins // 2
    widths = range(half, zero_bin + 1)
    divergences = [candidate_divergence(hist, zero_bin - i, min(zero_bin + i + 1, hist.size), num_quantized_bins)
                   for i in widths]
    i = widths[int(np.argmin(np.asarray(divergences, dtype=np.float32)))]
    low, high = edges[zero_bin - i], edges[min(zero_bin + i + 1, hist.size)]
    return (min_value if low < min_value else low), (max_value if high > max_value else high)


def entropy_thresholds(histograms: Dict[str, Tuple[np.ndarray, ...]], num_quantized_bins: int
                       ) -> Dict[str, Tuple[np.ndarray, ...]]:
    """{tensor: (low, high, hist, edges)}, what onnxruntime's `compute_entropy` returns."""
    return {name: (*entropy_threshold(h, num_quantized_bins), *h[:2]) for name, h in histograms.items()}
