"""synth: the demo speech corpus (wavs, data.lists, units.txt) under data/demo; its train split only
when the pipeline trains (model.train.enabled), else only what is evaluated, calibrated and studied."""


from edgeasr.cli import fresh_dir, run_stage
from edgeasr.demo.corpus import SPLITS, build_corpus, corpus_config
from edgeasr.params import load_stage_params
from edgeasr.paths import DEMO_CORPUS

OUT = DEMO_CORPUS  # a fixed output: with data=lists nothing is written elsewhere


def main(argv: list) -> None:
    params = load_stage_params("synth", argv)
    out = fresh_dir(OUT)
    if not params.data.synth.enabled:
        (out / "README.txt").write_text(f"Nothing synthesized: data={params.data.name} uses its own lists.\n")
        return
    cfg = corpus_config(params.data.synth)
    # Each utterance is seeded by (seed, split, index): the other splits are the same bytes either way.
    splits = SPLITS if params.model.train.enabled else tuple(s for s in SPLITS if s != "train")
    print(build_corpus(cfg, out, splits))


if __name__ == "__main__":
    run_stage(main)
