"""The synthesized corpus: disjoint splits, a train size that changes nothing else, same bytes from any
number of worker processes and whatever was synthesized before."""

import dataclasses
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import run_group
from edgeasr.demo.corpus import SPLITS, CorpusConfig, build_corpus, corpus_config, plan_corpus
from edgeasr.demo.tts import Speaker, Voice
from edgeasr.params import compose

DEFAULT = corpus_config(OmegaConf.load("conf/data/demo.yaml").synth)


def small(num_train: int) -> CorpusConfig:
    return dataclasses.replace(DEFAULT, num_train=num_train, num_test=6, num_test_unseen_voice=4, num_cali=3,
                               num_dev=3)


def test_splits_are_pairwise_disjoint_in_sentences():
    plan = plan_corpus(DEFAULT)
    sentences = {split: {s for s, _ in plan[split]} for split in SPLITS}
    assert {split: len(plan[split]) for split in SPLITS} == {
        "train": DEFAULT.num_train, "test": DEFAULT.num_test, "test_unseen_voice": DEFAULT.num_test_unseen_voice,
        "cali": DEFAULT.num_cali, "dev": DEFAULT.num_dev}
    for i, a in enumerate(SPLITS):
        assert len(sentences[a]) == len(plan[a]), f"{a} repeats a sentence"
        for b in SPLITS[i + 1:]:
            assert not sentences[a] & sentences[b], f"{a} and {b} share sentences"


def test_unseen_voice_split_uses_only_voices_absent_from_train():
    plan = plan_corpus(DEFAULT)
    train_voices = {v.variant for _, v in plan["train"]}
    assert not train_voices & {v.variant for _, v in plan["test_unseen_voice"]}


def test_a_larger_training_corpus_keeps_every_other_split_and_extends_train():
    base, large = plan_corpus(small(50)), plan_corpus(small(400))
    for split in ("test", "test_unseen_voice", "cali", "dev"):
        assert large[split] == base[split], split
    assert [s for s, _ in large["train"][:50]] == [s for s, _ in base["train"]]


def test_parallel_build_writes_the_bytes_of_a_serial_one(tmp_path):
    cfg = small(40)  # 43 jobs: more than one pool chunk (16), so the second worker starts mid-list
    digests = []
    for n, out in ((1, tmp_path / "serial"), (2, tmp_path / "parallel")):
        counts = build_corpus(cfg, out, splits=("train", "dev"), workers=n)
        assert counts == {"train": 40, "dev": 3}
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "wavs").iterdir())})
        assert (out / "train" / "data.list").is_file() and not (out / "test").exists()
    assert digests[0] == digests[1] and len(digests[0]) == 43


@pytest.mark.parametrize("variant", ["m1", "Reed"])  # m1: formant synthesis; Reed: a Klatt voice (C rand())
def test_an_utterance_has_the_same_samples_whatever_was_said_before(variant):
    # espeak-ng's C statics (pitch flutter, wave phase) made this sentence 43 959, 44 242 and 43 971
    # samples long when said three times in one process; the Klatt voices draw noise from rand()
    voice, sentence = Voice(variant, 160, 50, 50), "停止餐厅烤箱"
    first = Speaker().say(sentence, voice, seed=7)
    speaker = Speaker()
    speaker.say("打开客厅的灯", Voice("f3", 200, 70, 30), seed=1)
    again = [speaker.say(sentence, voice, seed=7) for _ in range(2)]
    assert all(np.array_equal(first, x) for x in again), [len(first)] + [len(x) for x in again]


def test_the_synth_stage_writes_the_train_split_only_for_a_pipeline_that_trains(tmp_path):
    """A shipped model needs only what is evaluated, calibrated and studied; the other splits are the
    same bytes either way."""
    root = Path(__file__).resolve().parents[1]
    corpora = {}
    for train_enabled in ("false", "true"):
        project = tmp_path / train_enabled
        project.mkdir()
        shutil.copy(root / "dvc.yaml", project)
        compose(project / "params.yaml", ["experiment=tiny", f"model.train.enabled={train_enabled}"], root / "conf")
        proc = run_group([sys.executable, str(root / "stages" / "synth.py")], 600, cwd=project)
        assert proc.returncode == 0, proc.stderr[-2000:]
        corpora[train_enabled] = project / "data" / "demo"
    assert [(c / "train" / "data.list").is_file() for c in corpora.values()] == [False, True]
    for split in (s for s in SPLITS if s != "train"):
        lines = [(c / split / "data.list").read_text().replace(str(c), "") for c in corpora.values()]
        assert lines[0] == lines[1] != ""
    wavs = [sorted(p.name for p in (c / "wavs").iterdir()) for c in corpora.values()]
    assert set(wavs[0]) < set(wavs[1])
    assert all((corpora["false"] / "wavs" / w).read_bytes() == (corpora["true"] / "wavs" / w).read_bytes()
               for w in wavs[0])
    assert (corpora["false"] / "units.txt").read_text() == (corpora["true"] / "units.txt").read_text()


def test_render_workers_end_on_sigterm_whatever_the_stage_handler():
    """A stage raises on SIGTERM (cli.run_stage); forked render workers must not inherit that, or the
    pool's terminate at exit can leave its queue lock held and the synth stage hangs."""
    import signal

    from edgeasr.cli import _terminate
    from edgeasr.demo.corpus import render_pool

    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        with render_pool(2) as pool:
            handlers = pool.map(signal.getsignal, [signal.SIGTERM] * 4, chunksize=1)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert handlers == [signal.SIG_DFL] * 4
