"""Tier 2: the real dvc.yaml, conf/ and stages/ in a temporary git + DVC repository with the tiny
preset; each param change must rerun exactly the stages that read it."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import install_fake_hb_mapper
from edgeasr.report.sweep import experiment_points
from edgeasr.params import compose
from edgeasr.rknn.toolkit import available, find_python

ROOT = Path(__file__).resolve().parents[1]
DVC_REPRO = [sys.executable, "-m", "dvc", "repro"]
pytestmark = pytest.mark.pipeline
RKNN = {"compile_rknn", "eval_rknn"}  # with npu=x3 they write a note; they read exp/bpu all the same
BPU = {"export_bpu", "eval_bpu", "calibrate", "bpu_config", "compile", "eval_quant"} | RKNN
ALL = {"synth", "train", "eval_torch", "dev_reference", "export", "eval_onnx", "summary"} | BPU


def run(cmd, cwd: Path, path_prefix: str = "") -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env["PATH"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def stages_run(output: str) -> set:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipeline")
    for item in ("dvc.yaml", "conf", "stages", "src", ".dvc/config"):
        src = ROOT / item
        dst = path / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    run(["git", "init", "-q"], path)
    run([sys.executable, "-m", "dvc", "init", "-q", "--force"], path)
    shutil.copy(ROOT / ".dvc" / "config", path / ".dvc" / "config")
    compose(path / "params.yaml", ["experiment=tiny"], path / "conf")
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "init"], path)
    out = run(DVC_REPRO, path)
    assert stages_run(out) == ALL
    (path / "first_repro.log").write_text(out)
    return path


def test_first_run_writes_metrics(repo):
    """torch.json has every set, context and mode; exports were checked; onnx.json compares each family."""
    metrics = json.loads((repo / "metrics" / "torch.json").read_text())
    assert set(metrics) == {"test", "test_unseen_voice"}
    modes = {"ctc_greedy", "ctc_prefix_beam", "attention_rescoring", "rtf"}
    assert set(metrics["test"]["full"]) == modes
    assert set(metrics["test"]["streaming"]) == modes | {"chunk_audio_ms", "chunk_compute_ms"}
    assert metrics["test"]["utterances"] == 6
    assert (repo / "exp" / "eval_torch" / "test.jsonl").is_file()
    # PyTorch is decoded once per test set and context (eval_torch), and once on the dev split
    # (dev_reference); no artifact stage decodes it again.
    decodes = re.findall(r"reference decoded: (\S+), (\S+),", (repo / "first_repro.log").read_text())
    assert sorted(decodes) == sorted([(s, c) for s in ("test", "test_unseen_voice") for c in ("streaming", "full")]
                                     + [("dev", "streaming")])
    assert {"train.yaml", "final.pt", "units.txt", "global_cmvn"} <= {p.name for p in (repo / "exp/trained_model").iterdir()}
    onnx_metrics = json.loads((repo / "metrics" / "onnx.json").read_text())
    assert set(onnx_metrics["test"]) == {"cpu", "cpu_int8", "gpu_streaming", "gpu_offline", "sherpa",
                                         "sherpa_default_frontend"}
    assert (repo / "exp" / "hyps" / "onnx" / "test" / "cpu.jsonl").is_file()
    manifest = json.loads((repo / "exp" / "export" / "artifacts.json").read_text())
    assert manifest["artifacts"]["cpu"]["files"]["encoder"] == "cpu/encoder.onnx"
    assert manifest["artifacts"]["cpu"]["parity"]["encoder_out"] <= manifest["artifacts"]["cpu"]["tolerance"]["encoder_out"]
    for family in ("cpu", "gpu_streaming", "gpu_offline"):
        assert onnx_metrics["test"][family]["ctc_greedy"]["cer_delta"] == 0.0
    assert json.loads((repo / "metrics" / "export.json").read_text())["cpu"]["encoder_out"] < 1e-4
    bpu = json.loads((repo / "metrics" / "bpu.json").read_text())
    for name in ("test", "test_unseen_voice"):
        assert bpu[name]["bpu_float"]["ctc_greedy"]["cer_delta"] == 0.0
        assert bpu[name]["bpu_float"]["ctc_prefix_beam"]["identical"] == 1.0
    assert json.loads((repo / "metrics" / "bpu_ops.json").read_text())["encoder"]["cpu_unexpected"] == 0
    quant = json.loads((repo / "metrics" / "quant.json").read_text())
    assert quant["mode"] == "emulated" and len(quant["worst_nodes"]) == 10
    assert set(quant["test"]["quantized"]) >= {"ctc_greedy", "ctc_prefix_beam", "cosine_encoder_out", "rtf"}
    assert (repo / "exp" / "bpu_config" / "config_encoder.yaml").is_file()
    compiled = json.loads((repo / "metrics" / "compile.json").read_text())
    assert compiled["sensitivity"]["dev_utterances"] == 4  # the tiny corpus's dev split
    with open(repo / "metrics" / "int8_sensitivity.csv", newline="") as f:
        groups = [row["group"] for row in csv.DictReader(f)]
    assert {"embed", "ctc", "encoders.0.feed_forward"} <= set(groups)
    assert compiled["sensitivity"]["evaluations"] == len(groups)


def test_second_repro_runs_nothing(repo):
    assert stages_run(run(DVC_REPRO, repo)) == set()


@pytest.mark.parametrize(
    "override,expected",
    [
        # the reference and everything scored against it
        ("compare.max_utts=3", {"eval_torch", "eval_onnx", "eval_bpu", "eval_quant", "eval_rknn", "summary"}),
        # the gpu graphs hold the top-K and the rescoring weights
        ("compare.ctc_weight=0.4", {"eval_torch", "export", "eval_onnx", "eval_bpu", "eval_quant", "eval_rknn",
                                    "summary"}),
        ("streaming.chunk_size=4", {"eval_torch", "dev_reference", "export", "eval_onnx", "summary"} | BPU),
        ("streaming.num_decoding_left_chunks=2", {"eval_torch", "dev_reference", "export", "eval_onnx", "summary"}
         | BPU),
        # the study's dev reference and its table; the quantized graphs are the same files
        ("bpu.sensitivity_utts=2", {"dev_reference", "compile"}),
        ("export.opset=14", {"export", "eval_onnx", "summary"}),
        ("bpu.layer_norm_on_bpu=true", BPU | {"summary"}),
        ("calibrate.max_samples=2", {"calibrate", "compile", "eval_quant", "compile_rknn", "summary"}),
        ("bpu.calibration_type=kl", {"compile", "eval_quant", "summary"}),
        # A budget reruns compile; what follows only when the chosen float set changes the graphs
        # (a budget of 100 points is met by all INT8, so the quantized models are the same files).
        ("bpu.max_cer_delta=100", {"compile"}),
        ("bpu.float_islands=false", {"bpu_config", "compile", "eval_quant", "summary"}),
        ("bpu.run_on_cpu=[{op:Conv,scope:'^/embed/conv/conv\\.0/'}]",
         {"bpu_config", "compile", "eval_quant", "summary"}),
        ("model=demo_moe", ALL - {"synth"}),
        ("data.synth.seed=7", ALL),
    ],
)
def test_param_change_reruns_exactly(repo, tmp_path, override, expected):
    """In a copy of the base repository (no restore needed). `summary` follows every artifact
    evaluation, since each one's metrics hold a measured real-time factor."""
    work = tmp_path / "repo"
    shutil.copytree(repo, work, symlinks=True)
    compose(work / "params.yaml", ["experiment=tiny", override], work / "conf")
    assert stages_run(run(DVC_REPRO, work)) == expected


def test_with_hb_mapper_on_path_the_pipeline_completes(repo, tmp_path):
    """The X3's own toolchain (a stand-in hb_mapper on PATH): compile runs it, the .bin files are listed
    as not runnable here, and hb_mapper's quantized ONNX is what eval_quant scores, labelled so."""
    work = tmp_path / "repo"
    shutil.copytree(repo, work, symlinks=True)
    bin_dir = tmp_path / "bin"
    install_fake_hb_mapper(bin_dir)
    assert stages_run(run(DVC_REPRO + ["-f", "-s", "compile"], work, str(bin_dir))) == {"compile"}
    assert stages_run(run(DVC_REPRO, work, str(bin_dir))) == {"eval_quant", "summary"}
    quant = json.loads((work / "metrics" / "quant.json").read_text())
    assert quant["mode"] == "compiled" and "hb_mapper" in quant["produced_by"]["quantized"]
    assert "board" in quant["not_evaluated"]["x3_bin"]
    # the stand-in's "quantized" model is the float graph: it decodes exactly as the float graphs do
    bpu = json.loads((work / "metrics" / "bpu.json").read_text())
    assert quant["test"]["quantized"]["ctc_greedy"] == bpu["test"]["bpu_float"]["ctc_greedy"]


def test_the_rk3588_path_is_off_by_default(repo):
    note = json.loads((repo / "metrics" / "rknn.json").read_text())["note"]
    assert note == "npu=x3: the RK3588 path is off (dvc exp run -S npu=rk3588)"
    assert "npu=x3" in (repo / "exp" / "rknn" / "README.txt").read_text()
    assert not (repo / "metrics" / "rknn.log").exists()  # logs live in exp/, declared


@pytest.mark.skipif(not available(), reason="rknn-toolkit2 environment missing (python -m edgeasr.rknn.toolkit "
                                            "create-env)")
def test_npu_rk3588_runs_the_real_toolchain_and_only_its_stages(repo, tmp_path):
    work = tmp_path / "repo"
    shutil.copytree(repo, work, symlinks=True)
    compose(work / "params.yaml", ["experiment=tiny", "npu=rk3588",
                                   f"npu.toolkit_python={find_python(None).absolute()}"], work / "conf")
    assert stages_run(run(DVC_REPRO, work)) == RKNN
    compiled = json.loads((work / "metrics" / "rknn_compile.json").read_text())
    assert compiled["encoder"]["ops_on_npu"] > 0 and compiled["encoder"]["rknn_bytes"] > 0
    assert (work / "exp" / "rknn" / "encoder.rknn").is_file()
    result = json.loads((work / "metrics" / "rknn.json").read_text())
    for name in ("test", "test_unseen_voice"):
        rk3588 = result[name]["rk3588_int8"]
        assert set(rk3588) >= {"ctc_greedy", "ctc_prefix_beam", "cosine_encoder_out", "simulator_time"}
        assert "rtf" not in rk3588  # the simulator's speed is not the chip's
    assert "rebuilt" in result["produced_by"]["rk3588_int8"]  # it says what it runs
    assert (work / "exp" / "rknn_simulation" / "simulator.log").is_file()


def test_own_model_and_lists_train_and_synthesize_nothing(repo, tmp_path):
    """model=wenet + data=lists on a WeNet-format directory and lists outside the repository."""
    own = tmp_path / "own"
    for item in ("dvc.yaml", "conf", "stages", "src", ".dvc/config"):
        dst = own / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, dst)
    run(["git", "init", "-q"], own)
    run([sys.executable, "-m", "dvc", "init", "-q", "--force"], own)
    shutil.copy(ROOT / ".dvc" / "config", own / ".dvc" / "config")
    lists = repo / "data" / "demo"
    compose(own / "params.yaml", [
        "model=wenet", f"model.dir={repo / 'exp' / 'trained_model'}",
        "data=lists", f"data.root={lists}", f"data.test_sets={{mine: {lists / 'test' / 'data.list'}}}",
        f"data.cali_list={lists / 'cali' / 'data.list'}", "compare.beam_size=3",
    ], own / "conf")
    run(["git", "add", "-A"], own)
    run(["git", "commit", "-qm", "own model"], own)
    run(DVC_REPRO, own)
    assert "Nothing trained" in (own / "exp" / "trained_model" / "README.txt").read_text()
    assert "Nothing synthesized" in (own / "data" / "demo" / "README.txt").read_text()
    assert not (own / "data" / "demo" / "wavs").exists()
    assert set(json.loads((own / "metrics" / "torch.json").read_text())) == {"mine"}
    assert set(json.loads((own / "metrics" / "onnx.json").read_text())) == {"produced_by", "mine"}
    assert set(json.loads((own / "metrics" / "bpu.json").read_text())) == {"produced_by", "mine"}
    assert set(json.loads((own / "metrics" / "quant.json").read_text())) == {"mode", "worst_nodes", "produced_by",
                                                                             "mine"}


def test_queued_sweep_reruns_only_chunk_stages(repo):
    """`dvc exp run --queue` a 2 x 2 chunk grid, `dvc queue start`: four experiments with metrics,
    none of which synthesized or trained anything (the README's sweep, at the tiny preset)."""
    dvc = [sys.executable, "-m", "dvc"]
    run(dvc + ["exp", "run", "--queue", "-S", "experiment=tiny", "-S", "streaming.chunk_size=2,4",
               "-S", "streaming.num_decoding_left_chunks=1,2"], repo)
    run(dvc + ["queue", "start", "-j", "2"], repo)
    deadline = time.monotonic() + 900
    while True:
        status = run(dvc + ["queue", "status"], repo)
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        assert time.monotonic() < deadline, status
        time.sleep(5)
    assert "Failed" not in status, status
    names = re.findall(r"^(\S+)\s+\S+\s+\S+.*Success", status, flags=re.M)
    assert len(names) == 4, status
    for name in names:
        ran = stages_run(run(dvc + ["queue", "logs", name], repo))
        assert ran and not ran & {"synth", "train"}, (name, ran)
    shown = json.loads(subprocess.run(dvc + ["exp", "show", "--json"], cwd=repo, capture_output=True, text=True,
                                      check=True).stdout)
    points = experiment_points(shown, "test")
    grid = {(p["chunk_size"], p["left_chunks"]) for p in points if p["artifact"] == "quantized"}
    assert {(2, 1), (2, 2), (4, 1), (4, 2)} <= grid
