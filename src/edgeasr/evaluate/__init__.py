"""Scoring: CER with WeNet's normalization, real-time factor."""

from .cer import ErrorCounts, normalize, score

__all__ = ["ErrorCounts", "normalize", "score"]
