"""Bad input through the documented entry points, as a user types it: one `error:` line naming the
key, file or value, exit code 2, and nothing written that a later stage would take."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_group

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    """A project root with the committed params.yaml, dvc.yaml and conf/ and nothing else: every case
    must fail before it reads data or writes anything."""
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    return tmp_path


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_group([sys.executable, *args], 300, cwd=cwd)


@pytest.mark.parametrize("script,args,message", [
    ("stages/eval_torch.py", ["streaming.chunk_size=0"], r"params.yaml: streaming.chunk_size=0: must be an integer >= 1"),
    ("stages/eval_torch.py", ["compare.beam_sise=4"], r"override 'compare.beam_sise': no such key"),
    ("stages/calibrate.py", ["calibrate.max_samples=2.5"], r"calibrate.max_samples=2.5: must be an integer >= 1"),
    ("stages/compile.py", ["bpu.max_cer_delta=-1"], r"bpu.max_cer_delta=-1: must be null or a number >= 0"),
    ("stages/compile.py", ["bpu.max_cer_delta=0.3", "data.dev_list=null"],
     r"bpu.max_cer_delta=0.3: the float-set search needs development utterances \(data.dev_list=None"),
    ("stages/compile.py", ["bpu.calibration_type=minmax"], r"bpu.calibration_type='minmax': must be one of default"),
    ("stages/eval_quant.py", [], r"exp/compile/artifacts.json: not found \(run the stage that writes exp/compile first\)"),
])
def test_stage_refuses_with_one_line_and_writes_nothing(project, script, args, message):
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    proc = run(project, str(ROOT / script), *args)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("INFO ")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert re.search(message, lines[0]), lines[0]
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before


def test_every_stage_refuses_an_unset_mandatory_value(project):
    """model=wenet without model.dir: the first stage says so, before DVC would have synthesized."""
    proc = run(project, "-m", "edgeasr.params", "model=wenet")
    assert proc.returncode == 0, proc.stderr
    proc = run(project, str(ROOT / "stages/synth.py"))
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ")
    assert "model.dir not set (pass -S model.dir=" in proc.stderr
    assert not (project / "data").exists()


@pytest.mark.parametrize("args,message", [
    (["-m", "edgeasr.params", "model=nonexistent"], "error: conf/: In 'config': Could not find 'model/nonexistent'"),
    ([str(ROOT / "examples/transcribe.py")], "usage: python examples/transcribe.py MODEL_DIR WAV"),
    ([str(ROOT / "examples/transcribe.py"), "no_model", "x.wav"], "error: no_model"),
])
def test_tools_refuse_with_one_line(project, args, message):
    proc = run(project, *args)
    assert proc.returncode != 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr[-2000:]
