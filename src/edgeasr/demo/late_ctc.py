"""CTC loss with a bonus for emitting each token later: a training-only objective against CTC's habit,
on this corpus, of emitting an utterance's first tokens ahead of their audio.

Plain CTC scores an alignment by its frame log-probabilities alone. Here every token onset (the
frame an alignment enters a token, not the frames that repeat it) at encoder frame t adds
`bonus * min(t, until_frame)` (`until_frame` 0: `bonus * t`). Every alignment of a label sequence has
the same number of onsets, so the bonus only ranks alignments by how late their tokens start: moving
one token a frame later gains `bonus` nats, up to `until_frame`. A bound keeps the bonus to the first
chunk's tokens; without one it rewards moving the whole sentence later (docs/training.md, run 10a).
bonus = 0 is torch's CTCLoss (reduction "sum", zero_infinity) exactly; the model and its checkpoint
are WeNet's either way.

NOTE: why: at full context the demo U2++ model emits the k-th token of an utterance at about frame k
(docs/training.md, runs 9a and 9b), ahead of audio that arrives at about one token per 7 frames;
streamed, the first chunk has not heard those tokens and guesses them (194 of 222 wrong tokens at
chunk 16). k2's delay penalty for transducers is the same idea with the opposite sign.
"""

import torch

NEG_INF = -1e30  # log(0) that stays finite through logsumexp's gradient


def extended_labels(ys_pad: torch.Tensor, ys_lens: torch.Tensor, blank: int) -> torch.Tensor:
    """(B, U) labels, padded anyhow -> (B, 2U + 1): blank, y1, blank, y2, ..., blank (padding: blank)."""
    batch, max_len = ys_pad.shape
    ext = torch.full((batch, 2 * max_len + 1), blank, dtype=torch.long, device=ys_pad.device)
    valid = torch.arange(max_len, device=ys_pad.device)[None, :] < ys_lens[:, None]
    ext[:, 1::2] = torch.where(valid, ys_pad, torch.full_like(ys_pad, blank))
    return ext


def _shifted(alpha: torch.Tensor, by: int) -> torch.Tensor:
    """alpha[:, s - by] at state s (NEG_INF for s < by)."""
    return torch.nn.functional.pad(alpha[:, :-by], (by, 0), value=NEG_INF)


def late_ctc_loss(log_probs: torch.Tensor, hlens: torch.Tensor, ys_pad: torch.Tensor, ys_lens: torch.Tensor,
                  bonus: float, until_frame: int = 0, blank: int = 0) -> torch.Tensor:
    """Summed over the batch: -log sum over alignments of exp(frame log-probs + bonus * onset frames),
    each onset frame counted up to `until_frame` (0: no bound).

    log_probs: (B, T, V) log-softmax outputs; hlens: (B,) valid frames; ys_pad: (B, U) labels (any
    padding); ys_lens: (B,). Utterances with no alignment (too few frames) contribute 0, as
    CTCLoss(zero_infinity=True)."""
    batch, frames, _ = log_probs.shape
    ext = extended_labels(ys_pad, ys_lens, blank)  # (B, S)
    states = ext.shape[1]
    emit = log_probs.gather(2, ext[:, None, :].expand(batch, frames, states))  # (B, T, S)
    state = torch.arange(states, device=ext.device)[None, :]
    is_token = state % 2 == 1  # odd states are tokens, even ones blanks
    two_back = torch.nn.functional.pad(ext[:, :-2], (2, 0), value=blank)
    skip_ok = is_token & (ext != two_back) & (state >= 3)  # blank skipped between different tokens
    onset_bonus = is_token.to(log_probs.dtype) * bonus  # (1, S): per frame of entering each state
    alpha = torch.full((batch, states), NEG_INF, dtype=log_probs.dtype, device=log_probs.device)
    alpha[:, :2] = emit[:, 0, :2]
    for t in range(1, frames):
        onset = onset_bonus * (min(t, until_frame) if until_frame > 0 else t)  # (1, S): entering a state at t
        enter_from_prev = _shifted(alpha, 1) + onset  # a token entered from its blank at frame t
        enter_by_skip = torch.where(skip_ok, _shifted(alpha, 2) + onset, NEG_INF)
        new = torch.logsumexp(torch.stack((alpha, enter_from_prev, enter_by_skip)), dim=0) + emit[:, t]
        alpha = torch.where((t < hlens)[:, None], new, alpha)
    last = alpha.gather(1, torch.stack((2 * ys_lens, (2 * ys_lens - 1).clamp(min=0)), dim=1))  # (B, 2)
    last[:, 1] = torch.where(ys_lens > 0, last[:, 1], NEG_INF)
    loss = -torch.logsumexp(last, dim=1)
    return torch.where(loss < -NEG_INF / 2, loss, torch.zeros_like(loss)).sum()
