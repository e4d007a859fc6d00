"""CTC and attention-rescoring search on plain arrays (backend-neutral), with WeNet's arithmetic."""

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

Hyp = Tuple[int, ...]


def log_add(*args: float) -> float:
    """log(sum(exp(a))) that is -inf when every a is -inf."""
    a_max = max(args)
    if a_max == -float("inf"):
        return a_max
    return a_max + math.log(sum(math.exp(a - a_max) for a in args))


def remove_duplicates_and_blank(ids: Sequence[int], blank: int = 0) -> List[int]:
    """Collapse repeats, then drop blanks: the CTC label sequence of a frame path."""
    out, prev = [], None
    for i in ids:
        if i != prev and i != blank:
            out.append(int(i))
        prev = i
    return out


def ctc_greedy_search(log_probs: np.ndarray, blank: int = 0) -> List[int]:
    """(T, V) log-probabilities -> best-path label sequence."""
    if log_probs.shape[0] == 0:
        return []
    return remove_duplicates_and_blank(log_probs.argmax(axis=1).tolist(), blank)


def _log_add2(a: float, b: float) -> float:
    """log_add(a, b) with log_add's exact arithmetic (the same max, exps and sum order)."""
    m = a if a > b else b
    if m == -math.inf:
        return m
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def _log_add3(a: float, b: float, c: float) -> float:
    m = a if a > b else b
    m = m if m > c else c
    if m == -math.inf:
        return m
    return m + math.log(math.exp(a - m) + math.exp(b - m) + math.exp(c - m))


def ctc_prefix_beam_search(log_probs: np.ndarray, beam_size: int, blank: int = 0) -> List[Tuple[Hyp, float]]:
    """(T, V) -> up to `beam_size` (prefix, log P(prefix)) best first.

    Per frame only the `beam_size` most likely tokens extend the beam (WeNet's first pruning);
    each prefix keeps (log P ending in blank, log P ending in non-blank).

    NOTE: written for speed in plain Python (top tokens of every frame in one stable argsort, rows as
    Python floats, two- and three-term log_add): the same operations in the same order as the
    textbook form, so hypotheses and scores are identical to it (tests/test_search.py)."""
    neg_inf = -math.inf
    if log_probs.shape[0] == 0:
        return [((), 0.0)]
    tops = np.argsort(-log_probs, axis=1, kind="stable")[:, :beam_size].tolist()
    rows = log_probs.tolist()
    cur: List[Tuple[Hyp, float, float]] = [((), 0.0, neg_inf)]
    for logp, top in zip(rows, tops):
        nxt: Dict[Hyp, List[float]] = {}
        for s in top:
            ps = logp[s]
            for prefix, pb, pnb in cur:
                if s == blank:
                    entry = nxt.get(prefix)
                    if entry is None:
                        nxt[prefix] = [_log_add3(neg_inf, pb + ps, pnb + ps), neg_inf]
                    else:
                        entry[0] = _log_add3(entry[0], pb + ps, pnb + ps)
                    continue
                extended = prefix + (s,)
                if prefix and s == prefix[-1]:
                    entry = nxt.get(prefix)  # *s + s -> *s
                    if entry is None:
                        nxt[prefix] = [neg_inf, _log_add2(neg_inf, pnb + ps)]
                    else:
                        entry[1] = _log_add2(entry[1], pnb + ps)
                    entry = nxt.get(extended)  # *s + blank + s -> *ss
                    if entry is None:
                        nxt[extended] = [neg_inf, _log_add2(neg_inf, pb + ps)]
                    else:
                        entry[1] = _log_add2(entry[1], pb + ps)
                else:
                    entry = nxt.get(extended)
                    if entry is None:
                        nxt[extended] = [neg_inf, _log_add3(neg_inf, pb + ps, pnb + ps)]
                    else:
                        entry[1] = _log_add3(entry[1], pb + ps, pnb + ps)
        scored = sorted(((_log_add2(v[0], v[1]), k, v) for k, v in nxt.items()), key=lambda x: x[0], reverse=True)
        cur = [(k, v[0], v[1]) for _, k, v in scored[:beam_size]]
    return [(prefix, _log_add2(pb, pnb)) for prefix, pb, pnb in cur]


def sequence_scores(log_probs: np.ndarray, hyps: Sequence[Hyp], eos: int, reverse: bool = False) -> np.ndarray:
    """Decoder log-probs (N, L+1, V) for [sos]+hyp inputs -> (N,) sum of log P(token) plus log P(eos).

    With reverse=True the decoder read each hypothesis right to left (bitransformer's right decoder)."""
    scores = np.zeros(len(hyps), dtype=np.float64)
    for i, hyp in enumerate(hyps):
        tokens = list(reversed(hyp)) if reverse else list(hyp)
        total = sum(float(log_probs[i, j, w]) for j, w in enumerate(tokens))
        scores[i] = total + float(log_probs[i, len(hyp), eos])
    return scores


def attention_rescoring(
    beam: Sequence[Tuple[Hyp, float]],
    scores: np.ndarray,
    r_scores: np.ndarray,
    ctc_weight: float,
    reverse_weight: float,
) -> Tuple[Hyp, float]:
    """Pick the hypothesis maximising decoder score (mixed L2R/R2L) + ctc_weight * CTC score."""
    best, best_score = (), -float("inf")
    for (hyp, ctc_score), l2r, r2l in zip(beam, scores, r_scores):
        score = float(l2r)
        if reverse_weight > 0:
            score = score * (1 - reverse_weight) + float(r2l) * reverse_weight
        score += ctc_score * ctc_weight
        if score > best_score:
            best, best_score = hyp, score
    return best, best_score
