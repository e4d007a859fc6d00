"""The demo trainer's pieces: chunk sampling, losses under bf16 autocast, per-batch chunk masks."""

import random

import pytest
import torch

from conftest import VOCAB, make_model
from edgeasr.demo.trainer import TrainConfig, training_chunk

ARCH = "conformer_nopos_conv2d8_relu_causal_bn"


def config(full_context_prob: float) -> TrainConfig:
    return TrainConfig(seed=0, time_budget_s=1, max_epochs=1, batch_frames=1000, peak_lr=1e-3, warmup_steps=1,
                       grad_clip=5.0, threads=1, spec_aug=False, bf16=True, full_context_prob=full_context_prob)


@pytest.mark.parametrize("prob", [0.0, 0.2, 0.5])
def test_training_chunk_shares(prob):
    rng = random.Random(0)
    draws = [training_chunk(config(prob), rng) for _ in range(4000)]
    full = sum(d == -1 for d in draws) / len(draws)
    assert abs(full - prob) < 0.03
    assert all(1 <= d <= 25 for d in draws if d != -1)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(3, 120, 20, generator=g)
    xlens = torch.tensor([120, 100, 77])
    ys = torch.randint(2, VOCAB - 1, (3, 5), generator=g)
    return xs, xlens, ys, torch.tensor([5, 4, 3])


def test_losses_stay_float32_under_bf16_autocast():
    """Autocast runs matmuls in bf16; CTC and label-smoothing losses are taken in float32 and stay
    within bf16 rounding of the float32 ones."""
    model = make_model(ARCH, feat_dim=20)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bf16 at 2 threads: NaN in about 1 of 4 processes (see trainer.bf16_usable)
    try:
        torch.manual_seed(0)  # the same dropout masks in both passes, whatever ran before this test
        exact = model(*batch(), chunk_size=-1)
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(*batch(), chunk_size=-1)
    finally:
        torch.set_num_threads(threads)
    for name in ("loss_ctc", "loss_att", "loss"):
        assert mixed[name].dtype == torch.float32 and torch.isfinite(mixed[name])
        assert abs(mixed[name].item() - exact[name].item()) < 0.05 * abs(exact[name].item())


def test_chunk_size_sets_the_attention_mask():
    """-1 attends to the whole utterance; a chunk of 1 frame sees no future, so the loss differs."""
    model = make_model(ARCH, feat_dim=20)
    model.eval()  # no dropout, BatchNorm statistics fixed
    with torch.no_grad():
        full = model(*batch(), chunk_size=-1)["loss_ctc"]
        again = model(*batch(), chunk_size=-1)["loss_ctc"]
        chunk = model(*batch(), chunk_size=1)["loss_ctc"]
    assert full.item() == again.item() and chunk.item() != full.item()
