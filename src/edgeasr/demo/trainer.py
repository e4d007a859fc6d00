"""Train the demo model in WeNet's format: train.yaml, final.pt (plain state_dict), units.txt, global_cmvn.

Dynamic chunk masks (so the model streams), optional SpecAugment, Adam with warm-up then cosine
decay over a wall-clock budget, one intra-op thread by default, bf16 autocast where the CPU computes
bf16 natively (weights, optimizer and losses stay float32).

Two schedules (`decoder_only_share`):
    0       WeNet's hybrid loss throughout: ctc_weight * CTC + (1 - ctc_weight) * attention.
    s > 0   CTC alone trains the encoder and CTC head for the first (1 - s) of the budget; the last
            s trains only the attention decoder on the frozen encoder (each phase has its own
            warm-up and cosine decay).

NOTE: measured on the demo corpus (300 utterances, 240 s, one thread; CER on those utterances, full
context / chunk 8): hybrid loss with ctc_weight 0.3 26.1 / 33.2 %, 0.9 16.9 / 20.9 %, CTC alone
4.9 / 5.7 %. On a closed grammar the attention decoder fits the text almost by itself (loss 0.6
per utterance on the shipped hybrid model, CTC 13.8) and its gradient keeps the small encoder from
the frame-level alignment CTC and streaming need; even a 10 % share of it costs half the accuracy.
"""

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import yaml
from tqdm import tqdm

from ..errors import EdgeAsrError
from ..frontend import load_cmvn, read_symbol_table
from ..frontend.cmvn import cmvn_stats_json
from ..frontend.dataset import load_utterances
from ..frontend.fbank import FRAME_SHIFT_MS, wenet_dataset_conf
from ..frontend.tokens import tokenize
from ..model import ModelSpec, build_model, load_model
from ..model.asr_model import IGNORE_ID
from ..model.ffn import moe_layers
from ..model.subsampling import SUBSAMPLING_CLASSES, min_input_frames
from ..params import dataclass_from
from .late_ctc import late_ctc_loss


TRAIN_SECTION_EXTRAS = ("enabled", "architecture")  # model.train keys that are not TrainConfig fields


@dataclass(frozen=True)
class TrainConfig:
    seed: int
    time_budget_s: float  # wall-clock training budget (feature extraction not included)
    max_epochs: int  # per phase: stop it earlier if reached
    batch_frames: int  # feature frames per batch (sum over utterances)
    peak_lr: float
    warmup_steps: int
    grad_clip: float
    threads: int  # intra-op threads; 1 is the robust default on a shared 2-core machine
    spec_aug: bool
    bf16: bool  # bf16 autocast when the CPU has native bf16 (avx512_bf16 / AMX); float32 elsewhere
    full_context_prob: float  # share of batches with full attention; the rest get a chunk in [min_chunk, max_chunk]
    min_chunk: int  # smallest training chunk in encoder frames (WeNet's dynamic chunk: 1)
    max_chunk: int  # largest training chunk in encoder frames (WeNet's dynamic chunk: 25)
    late_emission_bonus: float  # nats per encoder frame for each CTC token onset (late_ctc); 0 = WeNet's CTC
    late_emission_until_frame: int  # onsets after this encoder frame earn no more bonus (0 = no bound)
    max_leading_silence_ms: float  # each utterance gets 0..this much silence prepended (0 = none)
    decoder_only_share: float  # last share of the budget that trains only the decoder (0 = hybrid loss)
    frozen_norm_share: float  # share before the decoder phase: CTC with BatchNorm statistics frozen
    init_from: Optional[str]  # a model directory whose weights and CMVN start training (None: random);
    # a dense model's FFNs seed every expert of an MoE architecture (upcycled_state)
    embed_unit_scale: bool  # from scratch: embedded frames start at unit scale under abs_pos / rel_pos too

    def __post_init__(self) -> None:
        if self.min_chunk > self.max_chunk:
            raise EdgeAsrError(f"model.train.min_chunk={self.min_chunk}: must not exceed "
                               f"model.train.max_chunk={self.max_chunk}")


def train_config(section: Any) -> TrainConfig:
    """The TrainConfig of params' `model.train` section (its other keys are TRAIN_SECTION_EXTRAS)."""
    return dataclass_from(TrainConfig, section, "model.train", TRAIN_SECTION_EXTRAS)


def training_chunk(cfg: TrainConfig, rng: random.Random) -> int:
    """This batch's attention chunk in encoder frames (-1 = full context). WeNet's own sampling gives
    full context to about half of the batches and a chunk of 1..25 frames to the others; min_chunk > 1
    spends the streamed batches on the chunks a recipe streams at."""
    return -1 if rng.random() < cfg.full_context_prob else rng.randint(cfg.min_chunk, cfg.max_chunk)


def bf16_usable(threads: int) -> bool:
    """bf16 autocast only where oneDNN computes it natively (elsewhere it is emulated and slower than
    float32) and at one intra-op thread.

    NOTE: measured with torch 2.13.0 on this machine (avx512_bf16): at 2 threads the same bf16
    forward of a fixed model and batch gave NaN encoder outputs in about 1 of 4 fresh processes, and
    run-to-run differences otherwise; at 1 thread it was deterministic and finite every time. A NaN
    loss would poison every weight through Adam, so more threads train in float32."""
    return threads == 1 and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def make_batches(lengths: List[int], batch_frames: int, rng: random.Random) -> List[List[int]]:
    """Length-sorted buckets of about `batch_frames` frames, in random order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur, longest = [], [], 0
    for i in order:
        longest = max(longest, lengths[i])
        if cur and longest * (len(cur) + 1) > batch_frames:
            batches.append(cur)
            cur, longest = [], lengths[i]
        cur.append(i)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def spec_augment(x: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Two frequency masks (<= 10 bins) and two time masks (<= 40 frames) on (T, F)."""
    x = x.clone()
    t, f = x.shape
    for _ in range(2):
        w = rng.randint(0, 10)
        s = rng.randint(0, max(f - w, 0))
        x[:, s : s + w] = 0.0
        w = rng.randint(0, min(40, t // 5))
        s = rng.randint(0, max(t - w, 0))
        x[s : s + w, :] = 0.0
    return x


def with_leading_silence(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(T, F) -> (frames + T, F): the utterance's quietest frame (lowest summed log energy) repeated
    `frames` times before it."""
    quietest = x[int(torch.argmin(x.sum(dim=1)))]
    return torch.cat((quietest.expand(frames, -1), x))


def collate(
    feats: List[np.ndarray], labels: List[List[int]], idx: List[int], aug: bool, rng: random.Random,
    max_silence_frames: int = 0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The padded batch (xs, xlens, ys, ylens) of utterances `idx`; SpecAugment when `aug`, and
    0..max_silence_frames frames of leading silence on each utterance."""
    xs = [torch.from_numpy(feats[i]) for i in idx]
    if max_silence_frames > 0:
        xs = [with_leading_silence(x, rng.randint(0, max_silence_frames)) for x in xs]
    if aug:
        xs = [spec_augment(x, rng) for x in xs]
    ys = [torch.tensor(labels[i], dtype=torch.long) for i in idx]
    return (
        torch.nn.utils.rnn.pad_sequence(xs, batch_first=True),
        torch.tensor([x.shape[0] for x in xs]),
        torch.nn.utils.rnn.pad_sequence(ys, batch_first=True, padding_value=IGNORE_ID),
        torch.tensor([len(y) for y in ys]),
    )


PHASES = ("hybrid", "ctc", "ctc_frozen_norm", "decoder")  # what a step trains (see the module docstring)


def phase_loss(model: torch.nn.Module, batch: Tuple[torch.Tensor, ...], chunk_size: int, phase: str,
               late_bonus: float = 0.0, late_until: int = 0) -> torch.Tensor:
    """The loss of one batch in `phase`: WeNet's hybrid loss, CTC alone (late_ctc's with
    `late_bonus` > 0, bounded at frame `late_until`), or the attention decoder's loss on the encoder
    output computed without gradient."""
    if phase == "hybrid":
        return model(*batch, chunk_size)["loss"]
    xs, xlens, ys, ylens = batch
    if phase in ("ctc", "ctc_frozen_norm"):
        encoder_out, encoder_mask = model.encoder(xs, xlens, chunk_size)
        hlens = encoder_mask.squeeze(1).sum(1)
        if late_bonus <= 0:
            return model.ctc(encoder_out, hlens, ys, ylens)
        log_probs = torch.nn.functional.log_softmax(model.ctc.ctc_lo(encoder_out).float(), dim=2)
        return late_ctc_loss(log_probs, hlens, ys, ylens, late_bonus, late_until) / xs.size(0)
    with torch.no_grad():
        encoder_out, encoder_mask = model.encoder(xs, xlens, chunk_size)
    return model.attention_loss(encoder_out, encoder_mask, ys, ylens)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Tuple[torch.Tensor, ...],
               chunk_size: int, bf16: bool, grad_clip: float, phase: str = "hybrid",
               late_bonus: float = 0.0, late_until: int = 0) -> Optional[float]:
    """One update; None (and no update) when the loss or the gradient norm is not finite.

    NOTE: oneDNN's bf16 kernels (torch 2.13, this CPU) now and then return NaN for a batch, more
    often at two threads and in a process whose memory was used before; one NaN step would poison
    every weight through Adam. WeNet's trainer skips non-finite gradient norms the same way."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = phase_loss(model, batch, chunk_size, phase, late_bonus, late_until)
    if not torch.isfinite(loss):
        return None
    optimizer.zero_grad()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], grad_clip)
    if not torch.isfinite(grad_norm):
        optimizer.zero_grad()
        return None
    optimizer.step()
    return loss.item()


def extract_features(data_list: Path, input_layer: str, symbols: Dict[str, int]) -> Tuple[List[np.ndarray], List[str]]:
    """Features and transcripts under the data policy every stage shares (frontend.dataset): unreadable
    audio stops naming the list line, utterances shorter than one output frame are skipped."""
    min_frames = min_input_frames(SUBSAMPLING_CLASSES[input_layer].right_context)
    prepared = load_utterances(data_list, 0, min_frames, symbols).utterances
    return [p.feats for p in prepared], [p.utt.txt for p in prepared]


def learning_rate(cfg: TrainConfig, step: int, elapsed_fraction: float) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak at the end of the phase.

    step: steps taken in this phase; elapsed_fraction: share of the phase's budget used."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps)
    decay = 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(elapsed_fraction, 1.0)))
    return cfg.peak_lr * warm * decay


def phase_plan(cfg: TrainConfig, has_decoder: bool) -> List[Tuple[str, float]]:
    """The phases in order, each with its wall-clock budget in seconds (phases of 0 s left out)."""
    decoder_s = cfg.time_budget_s * cfg.decoder_only_share if has_decoder else 0.0
    frozen_s = cfg.time_budget_s * cfg.frozen_norm_share
    first = "hybrid" if has_decoder and cfg.decoder_only_share <= 0 else "ctc"
    if first == "hybrid" and cfg.late_emission_bonus > 0:  # the hybrid loss takes WeNet's CTC from the model
        raise EdgeAsrError(f"model.train.late_emission_bonus={cfg.late_emission_bonus}: applies to CTC-only "
                           "training; set model.train.decoder_only_share > 0")
    plan = [(first, cfg.time_budget_s - frozen_s - decoder_s), ("ctc_frozen_norm", frozen_s), ("decoder", decoder_s)]
    return [(phase, seconds) for phase, seconds in plan if seconds > 0] or [(first, 0.0)]


def enter_phase(model: torch.nn.Module, phase: str) -> None:
    """ctc_frozen_norm: BatchNorm in eval mode (running statistics used and no longer updated);
    decoder: the encoder and CTC head frozen whole (eval mode, no gradients)."""
    if phase == "ctc_frozen_norm":
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    if phase != "decoder":
        return
    for module in (model.encoder, model.ctc):
        module.eval()
        for param in module.parameters():
            param.requires_grad_(False)


def start_model_dir(architecture: Dict[str, Any], cfg: TrainConfig, symbols: Dict[str, int],
                    feats: List[np.ndarray], units: Path, out_dir: Path) -> torch.nn.Module:
    """Write global_cmvn, units.txt and train.yaml to out_dir; the model they describe, with
    `cfg.init_from`'s weights when set (its CMVN too: those weights saw features normalized by it);
    a dense `init_from` under an MoE architecture is upcycled (`upcycled_state`); from scratch,
    `cfg.embed_unit_scale` rescales the embedding (`unit_scale_embedding`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    init, _, init_symbols = load_model(Path(cfg.init_from)) if cfg.init_from else (None, None, None)
    if init is not None and init_symbols != symbols:
        raise EdgeAsrError(f"model.train.init_from={cfg.init_from}: its units.txt differs from {units}")
    if init is not None:
        (out_dir / "global_cmvn").write_text((Path(cfg.init_from) / "global_cmvn").read_text())
    else:
        (out_dir / "global_cmvn").write_text(json.dumps(cmvn_stats_json(feats)))
    (out_dir / "units.txt").write_text(units.read_text(encoding="utf-8"), encoding="utf-8")
    train_yaml = make_train_yaml(architecture, symbols, feats[0].shape[1])
    (out_dir / "train.yaml").write_text(yaml.safe_dump(train_yaml, allow_unicode=True, sort_keys=False))
    model = build_model(ModelSpec(train_yaml, len(symbols)), load_cmvn(out_dir / "global_cmvn", True))
    if init is not None:
        state = upcycled_state(init.state_dict(), model.state_dict())
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise EdgeAsrError(f"model.train.init_from={cfg.init_from}: not this architecture ({str(exc).splitlines()[0]})")
    elif cfg.embed_unit_scale:
        unit_scale_embedding(model)
    return model


def unit_scale_embedding(model: torch.nn.Module) -> None:
    """Divide the subsampling's projection (weight and bias) by sqrt(d) where the positional encoding
    multiplies the frames by sqrt(d) (abs_pos, rel_pos): the embedded frames then start at the scale
    no_pos gives them (no_pos itself is left as it is). An initialization only: the checkpoint stays WeNet's.

    NOTE: our reading of why: pre-LayerNorm blocks add their outputs to the residual stream
    unnormalized, so frames 8x larger (d = 64) make every block's first updates 8x smaller against
    it. Measured on the U2++ demo shape (rel_pos, conv2d, d = 64; 30 000 sentences, one thread,
    chunked CTC; docs/training.md): the running CTC loss after 1200 steps was 26.9 as WeNet initializes it, 27.4 with the positional term
    zeroed, 17.0 with no_pos, 20.7 with this scaling (12.5 after 3000 steps, WeNet's init 21.2)."""
    xscale = getattr(model.encoder.embed.pos_enc, "xscale", None)
    if xscale is None:
        return
    with torch.no_grad():
        linear = model.encoder.embed.projection_layer()
        linear.weight.div_(xscale)
        linear.bias.div_(xscale)


def upcycled_state(init_state: Dict[str, torch.Tensor], model_state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """`init_state` as the start of `model_state`'s model. Where the model has an MoE FFN and the
    init model a dense FFN in its place (sparse upcycling, Komatsuzaki et al. 2022), every expert
    starts as a copy of that FFN (`X.experts.{j}.w_1.weight` <- `X.w_1.weight`) and the gate
    `X.gate.weight` keeps the model's random init. Other keys are taken as they are; keys that match
    nothing stay in, so a strict `load_state_dict` names them.

    NOTE: the gate's top-k weights are a softmax over the k selected logits (they sum to 1), so the
    upcycled model computes exactly what the dense one does; the experts drift apart as soon as the
    random gate sends them different tokens, and the gate learns once they differ."""
    state, copied, upcycled_layers = dict(init_state), set(), set()
    for key in model_state:
        if key in init_state or ".experts." not in key:
            continue
        layer, rest = key.split(".experts.", 1)
        dense_key = f"{layer}.{rest.split('.', 1)[1]}"  # drop the expert index
        if dense_key in init_state:
            state[key] = init_state[dense_key]  # load_state_dict copies into each expert
            copied.add(dense_key)
            upcycled_layers.add(layer)
    for key in copied:
        del state[key]
    for layer in upcycled_layers:
        state[f"{layer}.gate.weight"] = model_state[f"{layer}.gate.weight"]
    return state


def run_phases(model: torch.nn.Module, cfg: TrainConfig, feats: List[np.ndarray], labels: List[List[int]],
               keep: List[int], rng: random.Random) -> Dict[str, Any]:
    """Train `model` in place through `phase_plan`, each phase on its own wall-clock budget; returns
    steps (total and per phase), skipped steps, epochs and the last losses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.peak_lr)
    lengths = [feats[i].shape[0] for i in keep]
    step, epoch, skipped, start = 0, 0, 0, time.monotonic()
    losses: List[float] = []
    model.train()
    use_bf16 = cfg.bf16 and bf16_usable(cfg.threads)
    silence_frames = int(cfg.max_leading_silence_ms / FRAME_SHIFT_MS)
    phase_steps: Dict[str, int] = {}
    bar = tqdm(total=int(cfg.time_budget_s), desc="train", unit="s")
    for phase, budget in phase_plan(cfg, model.decoder is not None):
        enter_phase(model, phase)
        phase_start, phase_step, phase_epoch = time.monotonic(), 0, 0
        while phase_epoch < cfg.max_epochs and time.monotonic() - phase_start < budget:
            for batch in make_batches(lengths, cfg.batch_frames, rng):
                elapsed = time.monotonic() - phase_start
                if elapsed >= budget:
                    break
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, phase_step, elapsed / budget)
                xs, xlens, ys, ylens = collate(feats, labels, [keep[i] for i in batch], cfg.spec_aug, rng,
                                               silence_frames)
                loss = train_step(model, optimizer, (xs, xlens, ys, ylens), training_chunk(cfg, rng), use_bf16,
                                  cfg.grad_clip, phase, cfg.late_emission_bonus, cfg.late_emission_until_frame)
                if loss is None:
                    skipped += 1
                    continue
                losses.append(loss)
                step, phase_step = step + 1, phase_step + 1
                bar.n = min(int(time.monotonic() - start), bar.total)
                bar.set_postfix(phase=phase, epoch=epoch, step=step, loss=f"{np.mean(losses[-50:]):.2f}")
            epoch, phase_epoch = epoch + 1, phase_epoch + 1
        phase_steps[phase] = phase_step
    bar.close()
    model.eval()
    return {
        "train_seconds": round(time.monotonic() - start, 1),
        "steps": step,
        "phase_steps": phase_steps,  # steps per phase: hybrid, or ctc then decoder
        "skipped_steps": skipped,  # non-finite loss or gradient (see train_step)
        "epochs": epoch,
        "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None,
        "bf16": use_bf16,
    }


def train(
    architecture: Dict[str, Any], cfg: TrainConfig, train_list: Path, units: Path, out_dir: Path
) -> Dict[str, Any]:
    """Train and write a WeNet model directory to out_dir; returns a small training report."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    phase_plan(cfg, architecture.get("decoder") is not None)  # refuses a bad plan before minutes of features
    symbols = read_symbol_table(units)
    feats, texts = extract_features(train_list, architecture["encoder_conf"].get("input_layer", "conv2d"), symbols)
    labels = [tokenize(t, symbols) for t in texts]
    keep = [i for i, y in enumerate(labels) if y]
    if not keep:
        raise EdgeAsrError(f"{train_list}: no utterance has a transcript")
    model = start_model_dir(architecture, cfg, symbols, feats, units, out_dir)

    # NOTE: MoE layers train in their dense form (every expert runs, the top-k gate weights them):
    # the same function and gradients as routing, 2.5-3x faster per step on CPU at demo size, where
    # routing's gathers and scatters cost more than the extra experts' matmuls.
    dense_layers = list(moe_layers(model).values())
    for layer in dense_layers:
        layer.form = "dense"
    report = run_phases(model, cfg, feats, labels, keep, rng)
    for layer in dense_layers:
        layer.form = "routed"
    torch.save(model.state_dict(), out_dir / "final.pt")
    return {**report, "utterances": len(keep), "parameters": sum(p.numel() for p in model.parameters())}


def make_train_yaml(architecture: Dict[str, Any], symbols: Dict[str, int], input_dim: int) -> Dict[str, Any]:
    """WeNet's current train.yaml layout around the architecture sections from conf/model/."""
    sos_eos = symbols["<sos/eos>"]
    return {
        **architecture,
        "input_dim": input_dim,
        "output_dim": len(symbols),
        "cmvn": "global_cmvn",
        "cmvn_conf": {"cmvn_file": "global_cmvn", "is_json_cmvn": True},
        "tokenizer": "char",
        "tokenizer_conf": {
            "symbol_table_path": "units.txt",
            "split_with_space": False,
            "special_tokens": {"<blank>": 0, "<unk>": 1, "<sos>": sos_eos, "<eos>": sos_eos},
        },
        "ctc": "ctc",
        "ctc_conf": {"ctc_blank_id": 0},
        "model": "asr_model",
        "dataset_conf": wenet_dataset_conf(input_dim),
    }
