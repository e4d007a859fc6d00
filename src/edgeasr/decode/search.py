"""CTC and attention-rescoring search on plain arrays (backend-neutral), with WeNet's arithmetic."""

import math
from typing import List, Sequence, Tuple

import numba
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


@numba.njit(cache=True)
def _log_add2(a: float, b: float) -> float:
    """log_add(a, b) with log_add's exact arithmetic (the same max, exps and sum order)."""
    m = a if a > b else b
    if m == -math.inf:
        return m
    return m + math.log(math.exp(a - m) + math.exp(b - m))


@numba.njit(cache=True)
def _log_add3(a: float, b: float, c: float) -> float:
    m = a if a > b else b
    m = m if m > c else c
    if m == -math.inf:
        return m
    return m + math.log(math.exp(a - m) + math.exp(b - m) + math.exp(c - m))


@numba.njit(cache=True)
def _candidate(node, slot_frame, slot_index, frame, cand_node, cand_pb, cand_pnb, n_cand):
    """Index of `node` among this frame's candidates, appending it at -inf / -inf when new.

    The append order is the first-access order of WeNet's per-frame dict (it breaks score ties)."""
    if slot_frame[node] == frame:
        return slot_index[node], n_cand
    slot_frame[node] = frame
    slot_index[node] = n_cand
    cand_node[n_cand] = node
    cand_pb[n_cand] = -math.inf
    cand_pnb[n_cand] = -math.inf
    return n_cand, n_cand + 1


@numba.njit(cache=True)
def _top_tokens(row, k):
    """The k largest entries of a (V,) row, best first, equal values in index order: the first k of
    a stable descending argsort, by insertion into a sorted list of k."""
    top = np.empty(min(k, row.shape[0]), np.int64)
    n = 0
    for v in range(row.shape[0]):
        x = row[v]
        if n == top.shape[0] and not x > row[top[n - 1]]:
            continue
        i = n if n < top.shape[0] else n - 1
        while i > 0 and x > row[top[i - 1]]:
            top[i] = top[i - 1]
            i -= 1
        top[i] = v
        if n < top.shape[0]:
            n += 1
    return top


@numba.njit(cache=True)
def _intern(table_key, table_node, key, new_node):
    """Node stored under `key` in an open-addressing table, or `new_node` stored there when absent."""
    mask = table_key.shape[0] - 1
    h = (key * 0x9E3779B97F4A7C15) & mask
    while table_key[h] != -1:
        if table_key[h] == key:
            return table_node[h]
        h = (h + 1) & mask
    table_key[h] = key
    table_node[h] = new_node
    return new_node


@numba.njit(cache=True)
def _prefix_beam_kernel(log_probs, beam_size, blank):
    """(T, V) float64 log-probs -> (beam nodes, their scores, parent, token) of the final beam.

    A prefix is a node of a trie interned by (parent, token), so equal prefixes are one node and a
    dict lookup of WeNet's search becomes an array lookup."""
    num_frames, vocab = log_probs.shape
    top_k = min(beam_size, vocab)
    max_nodes = 1 + num_frames * top_k * beam_size
    parent = np.empty(max_nodes, np.int64)
    token = np.empty(max_nodes, np.int64)
    parent[0], token[0] = -1, -1
    n_nodes = 1
    table_size = 1
    while table_size < 2 * max_nodes:
        table_size *= 2
    table_key = np.full(table_size, -1, np.int64)
    table_node = np.empty(table_size, np.int64)
    slot_frame = np.full(max_nodes, -1, np.int64)
    slot_index = np.empty(max_nodes, np.int64)
    max_cand = 2 * top_k * beam_size
    cand_node = np.empty(max_cand, np.int64)
    cand_pb = np.empty(max_cand, np.float64)
    cand_pnb = np.empty(max_cand, np.float64)
    cur_node = np.zeros(1, np.int64)
    cur_pb = np.zeros(1, np.float64)
    cur_pnb = np.full(1, -math.inf)
    for t in range(num_frames):
        n_cand = 0
        for s in _top_tokens(log_probs[t], top_k):
            ps = log_probs[t, s]
            for j in range(cur_node.shape[0]):
                node, pb, pnb = cur_node[j], cur_pb[j], cur_pnb[j]
                if s == blank:
                    i, n_cand = _candidate(node, slot_frame, slot_index, t, cand_node, cand_pb, cand_pnb, n_cand)
                    cand_pb[i] = _log_add3(cand_pb[i], pb + ps, pnb + ps)
                    continue
                ext = _intern(table_key, table_node, node * vocab + s, n_nodes)
                if ext == n_nodes:
                    parent[ext], token[ext] = node, s
                    n_nodes += 1
                if node != 0 and s == token[node]:
                    i, n_cand = _candidate(node, slot_frame, slot_index, t, cand_node, cand_pb, cand_pnb, n_cand)
                    cand_pnb[i] = _log_add2(cand_pnb[i], pnb + ps)  # *s + s -> *s
                    i, n_cand = _candidate(ext, slot_frame, slot_index, t, cand_node, cand_pb, cand_pnb, n_cand)
                    cand_pnb[i] = _log_add2(cand_pnb[i], pb + ps)  # *s + blank + s -> *ss
                else:
                    i, n_cand = _candidate(ext, slot_frame, slot_index, t, cand_node, cand_pb, cand_pnb, n_cand)
                    cand_pnb[i] = _log_add3(cand_pnb[i], pb + ps, pnb + ps)
        scores = np.empty(n_cand, np.float64)
        for i in range(n_cand):
            scores[i] = _log_add2(cand_pb[i], cand_pnb[i])
        # NOTE: a stable sort of the negated scores keeps equal scores in first-access order, as
        # Python's sorted(..., reverse=True) over WeNet's dict does.
        keep = np.argsort(-scores, kind="mergesort")[:beam_size]
        cur_node, cur_pb, cur_pnb = cand_node[keep], cand_pb[keep], cand_pnb[keep]
    final = np.empty(cur_node.shape[0], np.float64)
    for j in range(cur_node.shape[0]):
        final[j] = _log_add2(cur_pb[j], cur_pnb[j])
    return cur_node, final, parent[:n_nodes], token[:n_nodes]


def ctc_prefix_beam_search(log_probs: np.ndarray, beam_size: int, blank: int = 0) -> List[Tuple[Hyp, float]]:
    """(T, V) -> up to `beam_size` (prefix, log P(prefix)) best first.

    Per frame only the `beam_size` most likely tokens extend the beam (WeNet's first pruning);
    each prefix keeps (log P ending in blank, log P ending in non-blank).

    NOTE: compiled (numba) for speed: the same float64 operations in the same order as the textbook
    form, and ties broken in the same first-access order, so hypotheses and scores are identical to
    it (tests/test_search.py)."""
    if log_probs.shape[0] == 0:
        return [((), 0.0)]
    nodes, scores, parent, token = _prefix_beam_kernel(
        np.ascontiguousarray(log_probs, dtype=np.float64), beam_size, blank
    )
    parent_list, token_list = parent.tolist(), token.tolist()
    beam = []
    for node, score in zip(nodes.tolist(), scores.tolist()):
        prefix = []
        while node > 0:
            prefix.append(token_list[node])
            node = parent_list[node]
        beam.append((tuple(reversed(prefix)), score))
    return beam


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
