"""synth: the demo speech corpus (wavs, data.lists, units.txt) under data/demo."""

from pathlib import Path

from edgeasr.cli import fresh_dir, run_stage
from edgeasr.demo.corpus import CorpusConfig, build_corpus
from edgeasr.params import load_stage_params

OUT = Path("data/demo")  # a fixed output: with data=lists nothing is written elsewhere


def main(argv: list) -> None:
    p = load_stage_params("synth", argv)
    out = fresh_dir(OUT)
    if not p.data.synth.enabled:
        (out / "README.txt").write_text(f"Nothing synthesized: data={p.data.name} uses its own lists.\n")
        return
    s = p.data.synth
    cfg = CorpusConfig(
        seed=s.seed,
        num_train=s.num_train,
        num_test=s.num_test,
        num_test_unseen_voice=s.num_test_unseen_voice,
        num_cali=s.num_cali,
        heldout_voices=s.heldout_voices,
        noise_fraction=s.noise_fraction,
        snr_db=tuple(s.snr_db),
        floor_snr_db=tuple(s.floor_snr_db),
        rate_wpm=tuple(s.rate_wpm),
        pitch=tuple(s.pitch),
        pitch_range=tuple(s.pitch_range),
        exclude_voices=tuple(s.exclude_voices),
    )
    print(build_corpus(cfg, out))


if __name__ == "__main__":
    run_stage(main)
