"""train: a demo model in WeNet's format under exp/trained_model when model.train.enabled (model=demo_scratch,
the tiny and x3_110m presets); otherwise nothing: the shipped models/<name> or your model=wenet is read."""

from pathlib import Path

from edgeasr.cli import fresh_dir, run_stage, write_json
from edgeasr.demo.trainer import train, train_config
from edgeasr.params import load_stage_params, to_dict
from edgeasr.paths import TRAIN_METRICS, TRAINED_MODEL


def main(argv: list) -> None:
    params = load_stage_params("train", argv)
    t = params.model.train
    cfg = train_config(t) if t.enabled else None
    fresh_dir(TRAINED_MODEL)
    if cfg is None:
        (TRAINED_MODEL / "README.txt").write_text(f"Nothing trained: model={params.model.name} is read from model.dir.\n")
        write_json(TRAIN_METRICS, {"trained": False})
        return
    report = train(to_dict(t.architecture), cfg, Path(params.data.train_list), Path(params.data.units), TRAINED_MODEL)
    write_json(TRAIN_METRICS, {"trained": True, **report})


if __name__ == "__main__":
    run_stage(main)
