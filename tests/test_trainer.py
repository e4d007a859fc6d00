"""The demo trainer's pieces: chunk sampling, losses under bf16 autocast, per-batch chunk masks."""

import json
import math
import random
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import ARCHITECTURES, VOCAB, make_model, run_group, train_yaml, write_model_dir

from edgeasr.demo.trainer import (TrainConfig, collate, enter_phase, phase_loss, phase_plan, train, train_step,
                                  training_chunk)
from edgeasr.errors import EdgeAsrError
from edgeasr.model import load_model

ARCH = "conformer_nopos_conv2d8_relu_causal_bn"


def config(full_context_prob: float, max_chunk: int = 25, min_chunk: int = 1) -> TrainConfig:
    return TrainConfig(seed=0, time_budget_s=1, max_epochs=1, batch_frames=1000, peak_lr=1e-3, warmup_steps=1,
                       grad_clip=5.0, threads=1, spec_aug=False, bf16=True, full_context_prob=full_context_prob,
                       min_chunk=min_chunk, max_chunk=max_chunk, late_emission_bonus=0.0, late_emission_until_frame=0,
                       max_leading_silence_ms=0.0,
                       decoder_only_share=0.0, frozen_norm_share=0.0,
                       init_from=None, embed_unit_scale=False)


@pytest.mark.parametrize("prob,min_chunk,max_chunk", [(0.0, 1, 25), (0.2, 1, 25), (0.5, 1, 12), (0.1, 8, 16)])
def test_training_chunk_shares(prob, min_chunk, max_chunk):
    rng = random.Random(0)
    draws = [training_chunk(config(prob, max_chunk, min_chunk), rng) for _ in range(4000)]
    full = sum(d == -1 for d in draws) / len(draws)
    assert abs(full - prob) < 0.03
    assert {d for d in draws if d != -1} == set(range(min_chunk, max_chunk + 1))


def test_min_chunk_above_max_chunk_is_refused():
    with pytest.raises(EdgeAsrError, match=r"model.train.min_chunk=17: must not exceed model.train.max_chunk=16"):
        config(0.1, max_chunk=16, min_chunk=17)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(3, 120, 20, generator=g)
    xlens = torch.tensor([120, 100, 77])
    ys = torch.randint(2, VOCAB - 1, (3, 5), generator=g)
    return xs, xlens, ys, torch.tensor([5, 4, 3])


BF16_CHECK = """
import torch
from conftest import make_model
from test_trainer import ARCH, batch
torch.set_num_threads(1)
model = make_model(ARCH, feat_dim=20)
model.train()
torch.manual_seed(0)
exact = model(*batch(), chunk_size=-1)
torch.manual_seed(0)
with torch.autocast("cpu", dtype=torch.bfloat16):
    mixed = model(*batch(), chunk_size=-1)
for name in ("loss_ctc", "loss_att", "loss"):
    assert mixed[name].dtype == torch.float32 and torch.isfinite(mixed[name]), (name, mixed[name])
    assert abs(mixed[name].item() - exact[name].item()) < 0.05 * abs(exact[name].item()), name
"""


def test_losses_stay_float32_under_bf16_autocast():
    """Autocast runs matmuls in bf16; CTC and label-smoothing losses are taken in float32 and stay
    within bf16 rounding of the float32 ones. In a fresh one-thread process: oneDNN's bf16 kernels
    occasionally return NaN in a process whose memory was used before (see trainer.train_step)."""
    proc = run_group([sys.executable, "-c", BF16_CHECK], 300, cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_non_finite_step_is_skipped_without_touching_the_weights():
    model = make_model(ARCH, feat_dim=20)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    xs, xlens, ys, ylens = batch()
    xs[0, 5, 3] = float("nan")  # what a bad bf16 kernel call produces
    assert train_step(model, optimizer, (xs, xlens, ys, ylens), -1, False, 5.0) is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if "num_batches" not in k
               and "running" not in k)
    loss = train_step(model, optimizer, batch(), -1, False, 5.0)
    assert loss is not None and loss > 0
    assert not torch.equal(before["ctc.ctc_lo.weight"], model.state_dict()["ctc.ctc_lo.weight"])


def test_ctc_phase_loss_is_wenets_ctc_at_zero_bonus_and_lower_with_one():
    """late_ctc at bonus 0 gives the model's own CTC loss; a bonus adds to every alignment's score,
    and a bound at frame 1 adds less (but still some)."""
    model = make_model(ARCH, feat_dim=20)
    model.eval()
    with torch.no_grad():
        wenet = phase_loss(model, batch(), 4, "ctc")
        same = phase_loss(model, batch(), 4, "ctc", late_bonus=1e-9)
        bonus = phase_loss(model, batch(), 4, "ctc", late_bonus=0.1)
        bounded = phase_loss(model, batch(), 4, "ctc", late_bonus=0.1, late_until=1)
    assert abs(same.item() - wenet.item()) < 1e-3 * wenet.item() and bonus.item() < wenet.item()
    assert bonus.item() < bounded.item() < wenet.item()


def test_leading_silence_prepends_the_quietest_frame():
    feats = [np.array([[3.0, 3.0], [-5.0, -4.0], [1.0, 0.0]], dtype=np.float32)]
    rng = random.Random(0)
    lengths = set()
    for _ in range(50):
        xs, xlens, _, _ = collate(feats, [[1]], [0], False, rng, max_silence_frames=4)
        k = int(xlens[0]) - 3
        lengths.add(k)
        assert torch.equal(xs[0, :k], torch.tensor([[-5.0, -4.0]]).expand(k, 2))
        assert torch.equal(xs[0, k:], torch.from_numpy(feats[0]))
    assert lengths == {0, 1, 2, 3, 4}


def test_chunk_size_sets_the_attention_mask():
    """-1 attends to the whole utterance; a chunk of 1 frame sees no future, so the loss differs."""
    model = make_model(ARCH, feat_dim=20)
    model.eval()  # no dropout, BatchNorm statistics fixed
    with torch.no_grad():
        full = model(*batch(), chunk_size=-1)["loss_ctc"]
        again = model(*batch(), chunk_size=-1)["loss_ctc"]
        chunk = model(*batch(), chunk_size=1)["loss_ctc"]
    assert full.item() == again.item() and chunk.item() != full.item()


def test_phase_plan_orders_and_sizes_the_phases():
    cfg = replace(config(0.3), time_budget_s=1000)
    assert phase_plan(cfg, True) == [("hybrid", 1000)]
    assert phase_plan(replace(cfg, decoder_only_share=0.1), True) == [("ctc", 900), ("decoder", 100)]
    assert phase_plan(replace(cfg, decoder_only_share=0.1, frozen_norm_share=0.2), True) == [
        ("ctc", 700), ("ctc_frozen_norm", 200), ("decoder", 100)]
    assert phase_plan(replace(cfg, decoder_only_share=0.1, frozen_norm_share=0.9), True) == [
        ("ctc_frozen_norm", 900), ("decoder", 100)]
    assert phase_plan(replace(cfg, decoder_only_share=0.1), False) == [("ctc", 1000)]  # no decoder to train
    assert phase_plan(replace(cfg, late_emission_bonus=0.05), False) == [("ctc", 1000)]
    with pytest.raises(EdgeAsrError, match=r"model.train.late_emission_bonus=0.05: applies to CTC-only training"):
        phase_plan(replace(cfg, late_emission_bonus=0.05), True)  # the hybrid loss would ignore it


def test_frozen_norm_phase_keeps_batch_norm_statistics():
    model = make_model(ARCH)
    model.train()
    enter_phase(model, "ctc_frozen_norm")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms and all(not m.training for m in norms) and model.encoder.training
    before = [m.running_mean.clone() for m in norms]
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(2, 60, 20, generator=g) * 2 + 5
    ys = torch.randint(2, VOCAB - 1, (2, 5), generator=g)
    loss = model(xs, torch.tensor([60, 50]), ys, torch.tensor([5, 4]), -1)["loss_ctc"]
    loss.backward()
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
    assert norms[0].weight.grad is not None  # the affine part still learns


def test_init_from_starts_from_the_checkpoint_or_names_the_mismatch(tmp_path):
    """A refinement starts from the given model's weights and CMVN; another architecture is refused."""
    start = write_model_dir(tmp_path / "start", ARCH, feat_dim=80)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(2):
        soundfile.write(tmp_path / f"{i}.wav", rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
        lines.append(json.dumps({"key": str(i), "wav": str(tmp_path / f"{i}.wav"), "txt": "\u4e00\u4e01"}))
    (tmp_path / "train.list").write_text("\n".join(lines) + "\n")
    architecture = {k: v for k, v in train_yaml(ARCH, 80).items() if k in ARCHITECTURES[ARCH]}
    cfg = replace(config(1.0), time_budget_s=0, init_from=str(tmp_path / "start"))
    train(architecture, cfg, tmp_path / "train.list", tmp_path / "start" / "units.txt", tmp_path / "out")
    refined, _, _ = load_model(tmp_path / "out")
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), refined.state_dict().values()))
    assert (tmp_path / "out" / "global_cmvn").read_text() == (tmp_path / "start" / "global_cmvn").read_text()
    other = {**architecture, "encoder_conf": {**architecture["encoder_conf"], "num_blocks": 3}}
    with pytest.raises(EdgeAsrError, match=r"model\.train\.init_from=.*start: not this architecture"):
        train(other, cfg, tmp_path / "train.list", tmp_path / "start" / "units.txt", tmp_path / "out2")


def test_a_dense_init_under_moe_is_upcycled_to_the_same_function(tmp_path):
    """Every expert starts as the dense FFN, so the MoE model computes what the dense one does."""
    start = write_model_dir(tmp_path / "start", ARCH, feat_dim=80)
    rng = np.random.default_rng(0)
    soundfile.write(tmp_path / "0.wav", rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
    (tmp_path / "train.list").write_text(json.dumps({"key": "0", "wav": str(tmp_path / "0.wav"), "txt": "\u4e00"}) + "\n")
    dense = {k: v for k, v in train_yaml(ARCH, 80).items() if k in ARCHITECTURES[ARCH]}
    moe = {**dense, "encoder_conf": {**dense["encoder_conf"], "mlp_type": "moe", "n_expert": 3, "n_expert_activated": 2}}
    cfg = replace(config(1.0), time_budget_s=0, init_from=str(tmp_path / "start"))
    train(moe, cfg, tmp_path / "train.list", tmp_path / "start" / "units.txt", tmp_path / "out")
    upcycled, _, _ = load_model(tmp_path / "out")
    state = upcycled.state_dict()
    dense_w1 = start.state_dict()["encoder.encoders.0.feed_forward.w_1.weight"]
    assert all(torch.equal(state[f"encoder.encoders.0.feed_forward.experts.{j}.w_1.weight"], dense_w1) for j in range(3))
    xs = torch.randn(1, 90, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = start.encoder(xs, torch.tensor([90]), decoding_chunk_size=4)[0]
        got = upcycled.encoder(xs, torch.tensor([90]), decoding_chunk_size=4)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch,scaled", [("conformer_relpos_conv2d_swish_ln", True), (ARCH, False)])
def test_embed_unit_scale_divides_the_projection_from_scratch_only(tmp_path, arch, scaled):
    """From scratch, a rel_pos model's subsampling projection starts divided by sqrt(d), so its embedded
    frames start at no_pos's scale; a no_pos model and a refinement (init_from) are left as they are."""
    rng = np.random.default_rng(0)
    soundfile.write(tmp_path / "0.wav", rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
    (tmp_path / "train.list").write_text(json.dumps({"key": "0", "wav": str(tmp_path / "0.wav"), "txt": "\u4e00"}) + "\n")
    start = write_model_dir(tmp_path / "start", arch, feat_dim=80)
    architecture = {k: v for k, v in train_yaml(arch, 80).items() if k in ARCHITECTURES[arch]}
    units = tmp_path / "start" / "units.txt"
    models = {}
    for name, unit_scale, init_from in (("plain", False, None), ("unit", True, None), ("refined", True, "start")):
        cfg = replace(config(1.0), time_budget_s=0, embed_unit_scale=unit_scale,
                      init_from=str(tmp_path / init_from) if init_from else None)
        train(architecture, cfg, tmp_path / "train.list", units, tmp_path / name)
        models[name] = load_model(tmp_path / name)[0].state_dict()
    projection = [k for k in models["plain"] if k.startswith("encoder.embed.") and k.endswith("weight")][-1]
    xscale = math.sqrt(ARCHITECTURES[arch]["encoder_conf"]["output_size"])
    for key, value in models["plain"].items():
        want = value / xscale if scaled and key.rsplit(".", 1)[0] == projection.rsplit(".", 1)[0] else value
        torch.testing.assert_close(models["unit"][key], want, rtol=0, atol=0)
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), models["refined"].values()))


@pytest.mark.parametrize("argv", [[], ["--help"], ["--record-cer", "models/demo"]])
def test_release_refuses_an_option_as_its_output_directory(tmp_path, monkeypatch, argv):
    """`release --help` once started a 90-minute training into ./--help: an option is a usage error."""
    from edgeasr.demo.release import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeAsrError, match=r"^usage: .* OUT_DIR .* --record-cer MODEL_DIR"):
        main(argv)
    assert not any(tmp_path.iterdir())
