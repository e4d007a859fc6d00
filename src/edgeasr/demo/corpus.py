"""Build the demo corpus: sentences from the grammar, spoken by espeak-ng voice variants, trimmed,
resampled to 16 kHz, partly mixed with noise, written as 16-bit wavs plus WeNet data.lists.

Splits, their sentences pairwise disjoint: test (voices seen in train); test_unseen_voice (voice
variants never used in train); cali (calibration); dev (development: the INT8 sensitivity and
float-set search score on it); train, drawn last, so its size changes no other split. Same config ->
byte-identical files.
"""

import multiprocessing
import multiprocessing.pool
import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import soundfile
from tqdm import tqdm

from ..errors import EdgeAsrError
from ..frontend.audio import SAMPLE_RATE, resample
from ..frontend.datalist import Utterance, write_data_list
from ..params import dataclass_from
from .grammar import sample_sentence
from .tts import Speaker, Voice, voice_variants

SPLITS = ("train", "test", "test_unseen_voice", "cali", "dev")


@dataclass(frozen=True)
class CorpusConfig:
    seed: int
    num_train: int
    num_test: int
    num_test_unseen_voice: int
    num_cali: int
    num_dev: int
    heldout_voices: int  # voice variants reserved for test_unseen_voice
    noise_fraction: float  # share of utterances mixed with noise
    snr_db: Tuple[float, float]
    floor_snr_db: Tuple[float, float]  # recording noise floor under every utterance
    rate_wpm: Tuple[int, int]
    pitch: Tuple[int, int]
    pitch_range: Tuple[int, int]
    exclude_voices: Tuple[str, ...] = ()  # espeak-ng variants not used at all (effects, not speakers)

    def __post_init__(self) -> None:
        for name in ("num_train", "num_test", "num_test_unseen_voice", "num_cali", "num_dev"):
            if getattr(self, name) <= 0:
                raise EdgeAsrError(f"data.synth.{name}: must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.noise_fraction <= 1.0:
            raise EdgeAsrError(f"data.synth.noise_fraction: must be in [0, 1], got {self.noise_fraction}")


def corpus_config(section: Any) -> CorpusConfig:
    """The CorpusConfig of params' `data.synth` section (its `enabled` is the synth stage's switch)."""
    return dataclass_from(CorpusConfig, section, "data.synth", ("enabled",))


def draw_unique(rng: random.Random, count: int, exclude: Set[str], what: str) -> List[str]:
    """`count` distinct grammar sentences not in `exclude`."""
    out: List[str] = []
    seen = set(exclude)
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise EdgeAsrError(f"the grammar cannot supply {count} distinct {what} sentences")
        s = sample_sentence(rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def trim_silence(x: np.ndarray, threshold: float = 0.02, keep_s: float = 0.05, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Cut leading/trailing samples below `threshold` x peak, keeping `keep_s` seconds each side."""
    loud = np.flatnonzero(np.abs(x) > threshold * max(float(np.abs(x).max()), 1e-9))
    if loud.size == 0:
        return x
    keep = int(keep_s * rate)
    return x[max(loud[0] - keep, 0) : loud[-1] + keep + 1]


def colored_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2) noise, unit RMS."""
    white = rng.standard_normal(n)
    if kind != "white":
        spectrum = np.fft.rfft(white)
        f = np.arange(spectrum.size, dtype=np.float64)
        f[0] = 1.0
        spectrum /= f ** (0.5 if kind == "pink" else 1.0)
        white = np.fft.irfft(spectrum, n)
    return white / max(float(np.sqrt(np.mean(white**2))), 1e-12)


def render(speaker: Speaker, text: str, voice: Voice, cfg: CorpusConfig, rng: np.random.Generator) -> np.ndarray:
    """One utterance at 16 kHz: speak, trim, resample, noise floor, maybe noise, random gain."""
    audio = resample(speaker.say(text, voice, seed=int(rng.integers(2**31))), speaker.sample_rate)
    audio = trim_silence(audio.astype(np.float64))
    lead = np.zeros(int(rng.uniform(0.05, 0.3) * SAMPLE_RATE))
    tail = np.zeros(int(rng.uniform(0.05, 0.3) * SAMPLE_RATE))
    audio = np.concatenate([lead, audio, tail])
    speech_rms = float(np.sqrt(np.mean(audio**2)))
    # espeak-ng writes exact digital silence (also between words); a microphone never does, and
    # log-fbank of zeros (log FLT_EPSILON) would dominate the CMVN statistics. Every utterance gets
    # a recording noise floor; `noise_fraction` of them get real noise on top.
    floor_snr = rng.uniform(*cfg.floor_snr_db)
    audio = audio + colored_noise(rng, audio.size, "pink") * speech_rms / (10 ** (floor_snr / 20))
    if rng.random() < cfg.noise_fraction:
        snr = rng.uniform(*cfg.snr_db)
        noise = colored_noise(rng, audio.size, str(rng.choice(["white", "pink", "brown"])))
        audio = audio + noise * speech_rms / (10 ** (snr / 20))
    audio *= rng.uniform(0.3, 0.9) / max(float(np.abs(audio).max()), 1e-9)
    return audio.astype(np.float32)


def random_voice(rng: random.Random, variants: Sequence[str], cfg: CorpusConfig) -> Voice:
    return Voice(
        rng.choice(list(variants)),
        rng.randint(*cfg.rate_wpm),
        rng.randint(*cfg.pitch),
        rng.randint(*cfg.pitch_range),
    )


def plan_corpus(cfg: CorpusConfig) -> Dict[str, List[Tuple[str, Voice]]]:
    """(sentence, voice) per utterance and split, from the seed alone.

    NOTE: train is drawn last (sentences, then voices), so `num_train` changes the train split only:
    a larger training corpus for an offline run (edgeasr.demo.release) keeps every evaluation split
    of the default corpus, and its first `num_train` sentences are the default's.
    """
    rng = random.Random(cfg.seed)
    variants = [v for v in voice_variants() if v not in set(cfg.exclude_voices)]
    rng.shuffle(variants)
    if cfg.heldout_voices <= 0 or cfg.heldout_voices >= len(variants):
        raise EdgeAsrError(f"data.synth.heldout_voices: must be in 1..{len(variants) - 1}")
    heldout, seen_voices = variants[: cfg.heldout_voices], variants[cfg.heldout_voices :]
    sizes = {"test": cfg.num_test, "test_unseen_voice": cfg.num_test_unseen_voice, "cali": cfg.num_cali,
             "dev": cfg.num_dev, "train": cfg.num_train}
    plan: Dict[str, List[Tuple[str, Voice]]] = {}
    used: Set[str] = set()
    for split in ("test", "test_unseen_voice", "cali", "dev", "train"):
        sentences = draw_unique(rng, sizes[split], used, split)
        used |= set(sentences)
        voices = heldout if split == "test_unseen_voice" else seen_voices
        plan[split] = [(s, random_voice(rng, voices, cfg)) for s in sentences]
    return plan


def write_units(path: Path, train_texts: Sequence[str]) -> None:
    """units.txt: <blank> 0, <unk> 1, <sos/eos> 2, then the training characters in code-point order."""
    chars = sorted({c for t in train_texts for c in t if not c.isspace()})
    lines = ["<blank> 0", "<unk> 1", "<sos/eos> 2"] + [f"{c} {i + 3}" for i, c in enumerate(chars)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


_speaker: Optional[Speaker] = None  # one espeak-ng instance per worker process


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def render_pool(workers: int) -> multiprocessing.pool.Pool:
    """Forked worker processes for `_render_job`.

    NOTE: a pool's exit terminates its workers with SIGTERM. A stage's SIGTERM handler
    (cli.run_stage) raises, and forked workers inherit it: raised while a worker was releasing the
    pool's task-queue lock, it left the lock held, and the other worker waited for it forever (the
    synth stage hung after writing every wav, 2026-12-04; an earlier run printed both workers'
    Terminated tracebacks from inside the queue locks). Workers take the default action instead:
    they end."""
    return multiprocessing.get_context("fork").Pool(workers, initializer=_default_sigterm)


def _render_job(job: Tuple[str, Voice, Tuple[int, int, int], CorpusConfig, str]) -> None:
    global _speaker
    text, voice, seed, cfg, wav = job
    if _speaker is None:
        _speaker = Speaker()
    soundfile.write(wav, render(_speaker, text, voice, cfg, np.random.default_rng(list(seed))), SAMPLE_RATE,
                    subtype="PCM_16")


def build_corpus(cfg: CorpusConfig, out_dir: Path, splits: Sequence[str] = SPLITS,
                 workers: Optional[int] = None) -> Dict[str, int]:
    """Write wavs/, <split>/data.list for `splits` and units.txt under out_dir; returns utterances per
    split. Each utterance is rendered from its own seed (corpus seed, split, index), so `workers`
    processes (default: every core) write the same bytes as one."""
    plan = plan_corpus(cfg)
    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    jobs, lists = [], {}
    for split in splits:
        split_index = SPLITS.index(split)  # part of each utterance's seed: fixed per split name
        lists[split] = []
        for i, (text, voice) in enumerate(plan[split]):
            key = f"{split}_{i:05d}"
            wav = str(wav_dir / f"{key}.wav")
            jobs.append((text, voice, (cfg.seed, split_index, i), cfg, wav))
            lists[split].append(Utterance(key, wav, text))
    with render_pool(workers or os.cpu_count() or 1) as pool:
        for _ in tqdm(pool.imap_unordered(_render_job, jobs, chunksize=16), total=len(jobs), desc="synth",
                      unit="utt"):
            pass
    for split, utts in lists.items():
        (out_dir / split).mkdir(exist_ok=True)
        write_data_list(out_dir / split / "data.list", utts)
    write_units(out_dir / "units.txt", [t for t, _ in plan["train"]])
    return {split: len(utts) for split, utts in lists.items()}
