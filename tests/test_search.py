"""Decoders on hand-made posteriors, and the recognizer over a torch backend."""

import itertools
import math

import numpy as np
import pytest
import torch

from conftest import make_model
from edgeasr.decode import DecodeOptions, TorchBackend, recognize, stream_encode
from edgeasr.decode.search import (
    attention_rescoring,
    ctc_greedy_search,
    ctc_prefix_beam_search,
    log_add,
    remove_duplicates_and_blank,
    sequence_scores,
)


def test_greedy_collapses_repeats_then_drops_blanks():
    path = [0, 3, 3, 0, 3, 5, 5, 0, 0, 2]
    probs = np.full((len(path), 6), -10.0)
    probs[np.arange(len(path)), path] = 0.0
    assert ctc_greedy_search(probs) == [3, 3, 5, 2]
    assert remove_duplicates_and_blank([1, 1, 0, 1]) == [1, 1]


def brute_force_prefix_probs(log_probs: np.ndarray) -> dict:
    """P(labels) summed over every frame path: the exact quantity prefix beam search estimates."""
    totals: dict = {}
    t, v = log_probs.shape
    for path in itertools.product(range(v), repeat=t):
        label = tuple(remove_duplicates_and_blank(path))
        lp = sum(log_probs[i, s] for i, s in enumerate(path))
        totals[label] = log_add(totals.get(label, -math.inf), lp)
    return totals


def test_prefix_beam_with_full_beam_is_exact():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3))
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    exact = brute_force_prefix_probs(log_probs)
    # Like WeNet, the beam may carry prefixes of probability 0 (-inf); they rank last.
    beam = [(h, s) for h, s in ctc_prefix_beam_search(log_probs, beam_size=1000) if s > -math.inf]
    assert len(beam) == len(exact)
    for hyp, score in beam:
        assert abs(score - exact[hyp]) < 1e-9
    best = max(exact, key=exact.get)
    assert beam[0][0] == best


def test_prefix_beam_beats_greedy_when_mass_is_split():
    # Greedy path is blank,blank but label "1" has more total mass across paths.
    p = np.log(np.array([[0.4, 0.35, 0.25], [0.4, 0.35, 0.25]]))
    assert ctc_greedy_search(p) == []
    assert ctc_prefix_beam_search(p, 3)[0][0] == (1,)


def test_sequence_scores_and_rescoring_choice():
    eos = 4
    lp = np.log(np.full((2, 3, 5), 0.2))
    lp[0, 0, 1], lp[0, 1, 2], lp[0, 2, eos] = np.log(0.9), np.log(0.9), np.log(0.9)
    hyps = [(1, 2), (2, 1)]
    scores = sequence_scores(lp, hyps, eos)
    assert abs(scores[0] - 3 * np.log(0.9)) < 1e-12
    assert abs(scores[1] - (np.log(0.2) * 2 + np.log(0.2))) < 1e-12
    # CTC prefers hyp 1 slightly; the decoder's strong preference for hyp 0 wins at ctc_weight 0.5.
    best, _ = attention_rescoring([((1, 2), -3.0), ((2, 1), -2.5)], scores, np.zeros(2), 0.5, 0.0)
    assert best == (1, 2)
    best, _ = attention_rescoring([((1, 2), -30.0), ((2, 1), -2.5)], scores, np.zeros(2), 0.5, 0.0)
    assert best == (2, 1)


def test_reverse_scores_read_right_to_left():
    eos = 3
    lp = np.log(np.full((1, 3, 4), 0.25))
    lp[0, 0, 2] = np.log(0.7)  # the right decoder sees the last token first
    assert abs(sequence_scores(lp, [(1, 2)], eos, reverse=True)[0] - (np.log(0.7) + 2 * np.log(0.25))) < 1e-12


def test_recognizer_streaming_matches_wenet_chunk_by_chunk(feats):
    model = make_model("conformer_nopos_conv2d8_relu_causal_bn")
    backend = TorchBackend(model)
    x = feats[0].numpy()
    ours, log_probs = stream_encode(backend, x, 4, 2)
    with torch.no_grad():
        ref, _ = model.encoder.forward_chunk_by_chunk(feats, 4, 2)
        ref_log_probs = model.ctc.log_softmax(ref)[0].numpy()
    np.testing.assert_allclose(ours, ref[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(log_probs, ref_log_probs, atol=1e-5)
    out = recognize(backend, x, DecodeOptions(4, 2, beam_size=4, ctc_weight=0.3, reverse_weight=0.3)).hyps
    assert set(out) == {"ctc_greedy", "ctc_prefix_beam", "attention_rescoring"}
    assert out["ctc_greedy"] == ctc_greedy_search(ref_log_probs)


def test_torch_rescore_equals_decoder_forward(feats):
    """Backend scores equal a direct call of WeNet's decoder signature."""
    model = make_model("conformer_relpos_conv2d_swish_ln")
    backend = TorchBackend(model)
    enc, _ = backend.encode(feats[0].numpy())
    hyps = [(3, 4, 5), (6,)]
    scores, r_scores = backend.rescore(enc, hyps, 0.3)
    sos = eos = model.eos
    with torch.no_grad():
        memory = torch.from_numpy(enc).unsqueeze(0)
        ys = torch.tensor([[sos, 3, 4, 5]])
        r_ys = torch.tensor([[sos, 5, 4, 3]])
        l, r, _ = model.decoder(memory, torch.ones(1, 1, enc.shape[0], dtype=torch.bool), ys, torch.tensor([4]), r_ys, 0.3)
    l, r = torch.log_softmax(l, -1)[0], torch.log_softmax(r, -1)[0]
    assert abs(scores[0] - float(l[0, 3] + l[1, 4] + l[2, 5] + l[3, eos])) < 1e-5
    assert abs(r_scores[0] - float(r[0, 5] + r[1, 4] + r[2, 3] + r[3, eos])) < 1e-5


def textbook_prefix_beam(log_probs: np.ndarray, beam_size: int, blank: int = 0):
    """The plain form of WeNet's CTC prefix beam search (log_add over *args, a defaultdict per frame):
    what the optimized search must reproduce exactly, hypotheses and scores."""
    from collections import defaultdict

    from edgeasr.decode.search import log_add

    neg_inf = -float("inf")
    cur = [((), (0.0, neg_inf))]
    for logp in log_probs:
        top = np.argsort(-logp, kind="stable")[:beam_size]
        nxt = defaultdict(lambda: (neg_inf, neg_inf))
        for s in top.tolist():
            ps = float(logp[s])
            for prefix, (pb, pnb) in cur:
                last = prefix[-1] if prefix else None
                if s == blank:
                    n_pb, n_pnb = nxt[prefix]
                    nxt[prefix] = (log_add(n_pb, pb + ps, pnb + ps), n_pnb)
                elif s == last:
                    n_pb, n_pnb = nxt[prefix]
                    nxt[prefix] = (n_pb, log_add(n_pnb, pnb + ps))
                    n_pb, n_pnb = nxt[prefix + (s,)]
                    nxt[prefix + (s,)] = (n_pb, log_add(n_pnb, pb + ps))
                else:
                    n_pb, n_pnb = nxt[prefix + (s,)]
                    nxt[prefix + (s,)] = (n_pb, log_add(n_pnb, pb + ps, pnb + ps))
        cur = sorted(nxt.items(), key=lambda kv: log_add(*kv[1]), reverse=True)[:beam_size]
    return [(prefix, log_add(pb, pnb)) for prefix, (pb, pnb) in cur]


@pytest.mark.parametrize("seed", range(6))
def test_the_fast_prefix_beam_is_the_textbook_one_exactly(seed):
    """Peaky CTC posteriors (blank-heavy, repeats, ties from float32), beams 1, 4 and 10: the same
    prefixes in the same order with the same float scores."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((int(rng.integers(1, 90)), 60)) * 3
    x[:, 0] += rng.uniform(0, 12, x.shape[0])
    x[:, 5] = x[:, 6]  # exact ties between tokens
    log_probs = (x - np.log(np.exp(x).sum(1, keepdims=True))).astype(np.float32)
    for beam in (1, 4, 10):
        assert ctc_prefix_beam_search(log_probs, beam) == textbook_prefix_beam(log_probs, beam)


def test_the_compiled_search_is_the_textbook_one_on_a_long_wide_input():
    """A 4233-token vocabulary (the x3_110m preset's) over 300 frames: many trie nodes, many ties
    below the top tokens, beams wider than 10 still exact."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 4233)).astype(np.float32) * 2
    x[:, 0] += rng.uniform(0, 10, x.shape[0]).astype(np.float32)
    x[::3, 100:140] = x[::3].max(axis=1, keepdims=True)  # forty tokens tied at the top of every third frame
    log_probs = x - np.log(np.exp(x.astype(np.float64)).sum(1, keepdims=True)).astype(np.float32)
    for beam in (10, 16):
        assert ctc_prefix_beam_search(log_probs, beam) == textbook_prefix_beam(log_probs, beam)
