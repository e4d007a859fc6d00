"""Similarity of two signals, the one definition every report uses: the largest absolute difference
(export parity, CER-free fidelity) and the pooled cosine (per-node and output cosine of INT8 against
float). Entries not finite in both are left out: masked attention scores and the top-K CTC outputs
leave -inf behind."""

from typing import List, Sequence

import numpy as np


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| over entries finite in both (top-K log-probs leave the rest -inf); inf on shape mismatch."""
    if a.shape != b.shape:
        return float("inf")
    finite = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[finite] - b[finite]).max()) if finite.any() else 0.0


def cosine_parts(a: np.ndarray, b: np.ndarray) -> List[float]:
    """(a.b, a.a, b.b) in float64 over the entries finite in both: one pair's share of a pooled cosine."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    finite = np.isfinite(a) & np.isfinite(b)
    a, b = a[finite], b[finite]
    return [float(a @ b), float(a @ a), float(b @ b)]


class PooledCosine:
    """Cosine similarity of two signals pooled over many tensor pairs (samples, utterances).
    Entries not finite in both are left out (masked attention scores are -inf); 1.0 when both are zero."""

    def __init__(self) -> None:
        self.dot = self.aa = self.bb = 0.0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.add_parts(cosine_parts(a, b))

    def add_parts(self, parts: Sequence[float]) -> None:
        """Add one pair's (a.b, a.a, b.b), computed elsewhere (a worker) by `cosine_parts`."""
        dot, aa, bb = parts
        self.dot += dot
        self.aa += aa
        self.bb += bb

    def value(self) -> float:
        if self.aa == 0.0 and self.bb == 0.0:
            return 1.0
        return self.dot / max(float(np.sqrt(self.aa * self.bb)), 1e-30)
