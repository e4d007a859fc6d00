"""Train a demo checkpoint offline and ship it: the recipe behind `models/<name>/`.

    python -m edgeasr.demo.release models/demo model=demo model.train.time_budget_s=3900
    python -m edgeasr.demo.release models/demo_moe model=demo_moe model.train.time_budget_s=3900

Composes conf/ with the overrides (as `dvc exp run -S` would; `model.train.enabled` is ignored:
this always trains), synthesizes the training corpus `data.synth` describes (train split only, under
data/release/, reused when present: `data.synth.num_train=24000` makes a larger one whose other
splits, the pipeline's test sets, stay those of the default corpus; with `data=lists` it reads
`data.train_list` and `data.units` instead), trains with `edgeasr.demo.trainer` on this machine's CPU, and
writes WeNet's model directory (train.yaml, final.pt, units.txt, global_cmvn) plus
`provenance.json`: the command, the composed training config, corpus seed and size, steps, epochs,
wall time, hardware, torch version and the git commit it was trained at. After the pipeline has
evaluated the checkpoint, `python -m edgeasr.demo.release --record-cer models/demo metrics/torch.json`
adds its CER to the provenance.
"""

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import torch
from omegaconf import OmegaConf

from ..cli import run_stage
from ..errors import EdgeAsrError
from ..paths import RELEASE_CORPORA
from ..params import compose, to_dict
from .corpus import build_corpus, corpus_config
from .trainer import train, train_config

PROVENANCE = "provenance.json"


def git_commit() -> str:
    """The commit the run started from, marked dirty when the work tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=True,
                           capture_output=True, text=True).stdout.strip()
    return head + ("-dirty" if dirty else "")


def hardware() -> Dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__}


def training_corpus(data: Any) -> Tuple[Path, Path]:
    """(train data.list, units.txt) for the composed `data` section; synthesizes the train split of a
    synthesized corpus on first use."""
    if not data.synth.enabled:
        return Path(data.train_list), Path(data.units)
    cfg = corpus_config(data.synth)
    root = RELEASE_CORPORA / f"seed{cfg.seed}_train{cfg.num_train}"
    if not (root / "train" / "data.list").is_file():
        build_corpus(cfg, root, splits=("train",))
    return root / "train" / "data.list", root / "units.txt"


def release(out_dir: Path, overrides: Sequence[str]) -> Dict[str, Any]:
    """Train the composed demo model into out_dir; returns the provenance record it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        composed = Path(tmp) / "params.yaml"
        compose(composed, overrides)
        params = OmegaConf.load(composed)
    if "architecture" not in params.model.train:
        raise EdgeAsrError(f"model={params.model.name}: no model.train.architecture to train (a demo model is)")
    synth = params.data.synth
    train_list, units = training_corpus(params.data)
    record: Dict[str, Any] = {
        "command": "python -m edgeasr.demo.release " + " ".join([str(out_dir), *overrides]),
        "commit": git_commit(),
        "model": params.model.name,
        "train_config": to_dict(params.model.train),
        "corpus": {"name": params.data.name, "seed": synth.seed, "train_utterances": synth.num_train,
                   "train_list": str(train_list)},
        "hardware": hardware(),
    }
    init_from = params.model.train.get("init_from")
    if init_from:  # read before training overwrites it when the model is refined in place
        init_record = Path(init_from) / PROVENANCE
        record["init_from"] = {"dir": init_from,
                               "provenance": json.loads(init_record.read_text()) if init_record.is_file() else None}
    report = train(to_dict(params.model.train.architecture), train_config(params.model.train),
                   train_list, units, out_dir)
    record["training"] = report
    (out_dir / PROVENANCE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return record


def record_cer(model_dir: Path, torch_metrics: Path) -> None:
    """Copy CTC greedy CER per set and context from eval_torch's metrics into the provenance."""
    path = model_dir / PROVENANCE
    record = json.loads(path.read_text())
    metrics = json.loads(torch_metrics.read_text())
    record["cer_ctc_greedy"] = {
        test_set: {ctx: metrics[test_set][ctx]["ctc_greedy"]["cer"] for ctx in ("streaming", "full")}
        for test_set in metrics if isinstance(metrics[test_set], dict) and "streaming" in metrics[test_set]
    }
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def main(argv: list) -> None:
    if len(argv) == 3 and argv[0] == "--record-cer":
        record_cer(Path(argv[1]), Path(argv[2]))
        return
    if not argv or argv[0].startswith("-"):  # an option here is no output directory (--help would train into ./--help)
        raise EdgeAsrError("usage: python -m edgeasr.demo.release OUT_DIR [overrides...]"
                           " | --record-cer MODEL_DIR metrics/torch.json")
    release(Path(argv[0]), argv[1:])


if __name__ == "__main__":
    run_stage(main)
