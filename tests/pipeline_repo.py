"""The pipeline test repository both tier-2 modules build (tests/test_pipeline.py,
tests/test_pipeline_runs.py: two modules, so that pytest-xdist runs them on two workers)."""

import os
import re
import shutil
import sys
from pathlib import Path

from conftest import run_group
from edgeasr.params import compose

ROOT = Path(__file__).resolve().parents[1]
DVC_REPRO = [sys.executable, "-m", "dvc", "repro"]
RKNN = {"export_rknn", "compile_rknn", "eval_rknn"}  # the default npu=x3: they write a note
X3 = {"export_bpu", "eval_bpu", "calibrate", "bpu_config", "compile", "eval_quant"}
BPU = X3 | RKNN
ALL = {"synth", "train", "eval_torch", "dev_reference", "export", "eval_onnx", "summary"} | BPU
# The tiny preset, decoded serially: a Dask cluster per stage would cost more than the few utterances
# it decodes (`compute` is no stage param, so nothing reruns for it; tests/test_engine.py checks that
# the engine's workers give the serial metrics to the last digit).
BASE = ["experiment=tiny", "compute.workers=1"]
RUN_TIMEOUT_S = 900  # the longest run here, the first tiny repro, takes minutes on 2 busy cores


def run(cmd, cwd: Path, path_prefix: str = "", timeout: float = RUN_TIMEOUT_S) -> str:
    """`cmd` in `cwd`; its stdout + stderr. Fails on a non-zero exit, or after `timeout` seconds."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env["PATH"]
    proc = run_group(cmd, timeout, cwd=cwd, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def stages_run(output: str) -> set:
    return set(re.findall(r"Running stage '([^']+)'", output))


def make_repo(tmp_path_factory) -> Path:
    """The real dvc.yaml, conf/, stages/ and src/ in a fresh git + DVC repository, the tiny preset
    composed and reproduced once (every stage runs; its log kept in first_repro.log)."""
    path = tmp_path_factory.mktemp("pipeline")
    for item in ("dvc.yaml", "conf", "stages", "src", ".dvc/config"):
        src = ROOT / item
        dst = path / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    run(["git", "init", "-q"], path)
    run([sys.executable, "-m", "dvc", "init", "-q", "--force"], path)
    shutil.copy(ROOT / ".dvc" / "config", path / ".dvc" / "config")
    compose(path / "params.yaml", BASE, path / "conf")
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "init"], path)
    out = run(DVC_REPRO, path)
    assert stages_run(out) == ALL
    (path / "first_repro.log").write_text(out)
    return path
