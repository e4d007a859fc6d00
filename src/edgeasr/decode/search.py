"""CTC and attention-rescoring search on plain arrays (backend-neutral), with WeNet's arithmetic."""

import math
from collections import defaultdict
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


def ctc_prefix_beam_search(log_probs: np.ndarray, beam_size: int, blank: int = 0) -> List[Tuple[Hyp, float]]:
    """(T, V) -> up to `beam_size` (prefix, log P(prefix)) best first.

    Per frame only the `beam_size` most likely tokens extend the beam (WeNet's first pruning);
    each prefix keeps (log P ending in blank, log P ending in non-blank)."""
    neg_inf = -float("inf")
    cur: List[Tuple[Hyp, Tuple[float, float]]] = [((), (0.0, neg_inf))]
    for logp in log_probs:
        top = np.argsort(-logp, kind="stable")[:beam_size]
        nxt: Dict[Hyp, Tuple[float, float]] = defaultdict(lambda: (neg_inf, neg_inf))
        for s in top.tolist():
            ps = float(logp[s])
            for prefix, (pb, pnb) in cur:
                last = prefix[-1] if prefix else None
                if s == blank:
                    n_pb, n_pnb = nxt[prefix]
                    nxt[prefix] = (log_add(n_pb, pb + ps, pnb + ps), n_pnb)
                elif s == last:
                    n_pb, n_pnb = nxt[prefix]
                    nxt[prefix] = (n_pb, log_add(n_pnb, pnb + ps))  # *s + s -> *s
                    n_prefix = prefix + (s,)
                    n_pb, n_pnb = nxt[n_prefix]
                    nxt[n_prefix] = (n_pb, log_add(n_pnb, pb + ps))  # *s + blank + s -> *ss
                else:
                    n_prefix = prefix + (s,)
                    n_pb, n_pnb = nxt[n_prefix]
                    nxt[n_prefix] = (n_pb, log_add(n_pnb, pb + ps, pnb + ps))
        cur = sorted(nxt.items(), key=lambda kv: log_add(*kv[1]), reverse=True)[:beam_size]
    return [(prefix, log_add(pb, pnb)) for prefix, (pb, pnb) in cur]


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
