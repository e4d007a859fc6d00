"""late_ctc: CTC with a bonus per token onset frame; 0 is torch's CTCLoss, > 0 ranks later onsets higher."""

import math

import torch

from edgeasr.demo.late_ctc import late_ctc_loss


def case(seed: int = 0):
    """Logits (B, T, V) with repeated labels (which need a blank between them) and short utterances."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 40, 12, generator=g)
    ys = torch.randint(1, 12, (6, 9), generator=g)
    ys[0, 1] = ys[0, 0]
    ys[1, 2:4] = ys[1, 1]
    ylens = torch.tensor([9, 7, 3, 1, 9, 5])
    hlens = torch.tensor([40, 33, 20, 5, 9, 40])  # row 4: 9 frames cannot hold its 9 labels
    ys[torch.arange(9)[None, :] >= ylens[:, None]] = -1
    return logits, hlens, ys, ylens


def test_zero_bonus_is_torch_ctc_loss_and_its_gradient():
    logits, hlens, ys, ylens = case()
    logits.requires_grad_()
    ref = torch.nn.CTCLoss(reduction="sum", zero_infinity=True)(logits.log_softmax(2).transpose(0, 1), ys, hlens,
                                                                 ylens)
    ours = late_ctc_loss(logits.log_softmax(2), hlens, ys, ylens, 0.0)
    assert abs(ours.item() - ref.item()) < 1e-3 * abs(ref.item())
    g_ref, = torch.autograd.grad(ref, logits)
    g_ours, = torch.autograd.grad(ours, logits)
    assert (g_ref - g_ours).abs().max() < 1e-4


def test_the_bonus_counts_onsets_not_repeated_frames():
    """One label over 3 frames: alignments a--, aa-, aaa, -a-, -aa, --a, with onsets at frames 0, 0,
    0, 1, 1, 2. Uniform frame probabilities 1/2 (blank and a): sum = (3 + 2e^b + e^2b) / 8."""
    log_probs = torch.full((1, 3, 2), math.log(0.5))
    for bonus in (0.0, 0.7):
        loss = late_ctc_loss(log_probs, torch.tensor([3]), torch.tensor([[1]]), torch.tensor([1]), bonus)
        expected = -math.log((3 + 2 * math.exp(bonus) + math.exp(2 * bonus)) / 8)
        assert abs(loss.item() - expected) < 1e-5, bonus


def test_onsets_past_the_bound_earn_no_more():
    """The same alignments bounded at frame 1: onsets 0, 0, 0, 1, 1, 1, so sum = (3 + 3e^b) / 8."""
    log_probs = torch.full((1, 3, 2), math.log(0.5))
    bonus = 0.7
    loss = late_ctc_loss(log_probs, torch.tensor([3]), torch.tensor([[1]]), torch.tensor([1]), bonus, until_frame=1)
    assert abs(loss.item() + math.log((3 + 3 * math.exp(bonus)) / 8)) < 1e-5


def test_the_bonus_moves_the_gradient_toward_later_emission():
    """Where the same label may start anywhere, a bonus lowers the loss of late emission."""
    logits = torch.zeros(1, 10, 3, requires_grad=True)
    loss = late_ctc_loss(logits.log_softmax(2), torch.tensor([10]), torch.tensor([[2]]), torch.tensor([1]), 0.5)
    grad, = torch.autograd.grad(loss, logits)
    assert grad[0, -1, 2] < grad[0, 0, 2]  # descent raises the label's logit at the last frame most
