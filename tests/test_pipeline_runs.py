"""Tier 2, whole runs and faults: your own U2++-shaped model through the RK3588 toolchain, your own
model with npu=none, a queued sweep,
and real signals, damaged files, a full disk and two runs at once, each in a copy of the pipeline
test repository (its own module, so that pytest-xdist runs it beside tests/test_pipeline.py)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import run_group, write_model_dir
from edgeasr.params import compose
from edgeasr.report.sweep import experiment_points
from edgeasr.rknn.toolkit import available, find_python
from pipeline_repo import BASE, DVC_REPRO, RKNN, ROOT, RUN_TIMEOUT_S, make_repo, run, stages_run

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory)


def exp_show(repo: Path) -> list:
    """`dvc exp show --json` in `repo`, parsed."""
    proc = run_group([sys.executable, "-m", "dvc", "exp", "show", "--json"], RUN_TIMEOUT_S, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def own_model_repo(repo: Path, tmp_path: Path, arch: str):
    """The README's "Your own model" setup: the project's files in a fresh repository outside this
    one, a WeNet model directory of `arch`, the demo's lists; returns (repository, overrides)."""
    own = tmp_path / "own"
    for item in ("dvc.yaml", "conf", "stages", "src", ".dvc/config"):
        dst = own / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, dst)
    write_model_dir(tmp_path / "model", arch, feat_dim=80)
    run(["git", "init", "-q"], own)
    run([sys.executable, "-m", "dvc", "init", "-q", "--force"], own)
    shutil.copy(ROOT / ".dvc" / "config", own / ".dvc" / "config")
    lists = repo / "data" / "demo"
    overrides = ["model=wenet", f"model.dir={tmp_path / 'model'}", "data=lists", f"data.root={lists}",
                 f"data.test_sets={{mine: {lists / 'test' / 'data.list'}}}",
                 f"data.cali_list={lists / 'cali' / 'data.list'}", "compare.beam_size=3", "compute.workers=1"]
    compose(own / "params.yaml", overrides, own / "conf")
    run(["git", "add", "-A"], own)
    run(["git", "commit", "-qm", "own model"], own)
    return own, overrides


@pytest.mark.skipif(not available(), reason="rknn-toolkit2 environment missing (python -m edgeasr.rknn.toolkit "
                                            "create-env)")
def test_own_u2pp_model_runs_the_real_rk3588_toolchain(repo, tmp_path):
    """`dvc exp run -S model=wenet -S model.dir=<U2++-shaped conformer> -S npu=rk3588`: rel_pos +
    rel_selfattn, swish, a causal LayerNorm conv module and conv2d, which the X3 contract refuses, are
    exported, compiled by rknn-toolkit2 and streamed in its simulator; the X3 stages write notes."""
    own, overrides = own_model_repo(repo, tmp_path, "conformer_relpos_conv2d_swish_ln")
    overrides += [f"rknn.toolkit_python={find_python(None).absolute()}"]
    ran = stages_run(run([sys.executable, "-m", "dvc", "exp", "run"] + [arg for o in overrides + ["npu=rk3588"]
                                                                       for arg in ("-S", o)], own))
    assert RKNN <= ran
    compiled = json.loads((own / "metrics" / "rknn_compile.json").read_text())["encoder"]
    assert compiled["rknn_bytes"] > 0 and compiled["ops_on_npu"] > 0.9 * compiled["ops"]  # op placement, measured
    assert (own / "exp" / "rknn" / "encoder.rknn").is_file()
    exported = json.loads((own / "metrics" / "rknn_export.json").read_text())
    assert exported["parity"]["encoder_out"] <= exported["tolerance"]["encoder_out"]
    result = json.loads((own / "metrics" / "rknn.json").read_text())
    assert result["mine"]["rk3588_float"]["ctc_greedy"]["cer_delta"] == 0.0  # the float graph: PyTorch's
    rk3588 = result["mine"]["rk3588_int8"]
    assert set(rk3588) >= {"ctc_greedy", "ctc_prefix_beam", "cosine_encoder_out", "simulator_time"}
    assert "rtf" not in rk3588  # the simulator's speed is not the chip's
    assert "rebuilt" in result["produced_by"]["rk3588_int8"]  # it says what it runs
    assert list((own / "exp" / "rknn_simulation").glob("simulator-*.log"))  # one per process that simulated
    for off in ("bpu.json", "quant.json", "compile.json"):
        assert set(json.loads((own / "metrics" / off).read_text())) == {"note"}, off


def test_own_rel_pos_noncausal_model_runs_onnx_only_with_npu_none(repo, tmp_path):
    """The README's "Your own model" run (model=wenet + data=lists, outside the repository) on what
    WeNet's recipes train: rel_pos, a non-causal conv module of kernel 15, which the X3 contract
    refuses. With npu=none `dvc exp run` completes and records its metrics; with npu=x3 it stops at
    export_bpu with the contract's one line."""
    own, overrides = own_model_repo(repo, tmp_path, "conformer_relpos_noncausal_k15")
    dvc = [sys.executable, "-m", "dvc"]
    run(dvc + ["exp", "run"] + [arg for o in overrides + ["npu=none"] for arg in ("-S", o)], own)
    assert "Nothing trained" in (own / "exp" / "trained_model" / "README.txt").read_text()
    assert "Nothing synthesized" in (own / "data" / "demo" / "README.txt").read_text()
    assert not (own / "data" / "demo" / "wavs").exists()
    torch_metrics = json.loads((own / "metrics" / "torch.json").read_text())
    assert set(torch_metrics) == {"mine"} and "not causal" in torch_metrics["mine"]["streaming"]["warning"]
    assert set(json.loads((own / "metrics" / "onnx.json").read_text())) == {"produced_by", "mine"}
    for off in ("bpu.json", "quant.json", "compile.json", "rknn.json"):
        assert set(json.loads((own / "metrics" / off).read_text())) == {"note"}, off
    assert [p.name for p in (own / "exp" / "bpu").iterdir()] == ["README.txt"]
    summary = json.loads((own / "metrics" / "summary.json").read_text())
    assert summary["npu"] == "none" and all(v.startswith("not built") for v in summary["targets"].values())
    shown = exp_show(own)
    experiment = next(e for rev in shown for e in (rev.get("experiments") or []) if e.get("revs"))["revs"][0]
    metrics = experiment["data"]["metrics"]
    assert "mine" in metrics["metrics/onnx.json"]["data"] and "targets" in metrics["metrics/summary.json"]["data"]
    # The X3 chosen: it fails as the user asked for it, with the contract's one line.
    compose(own / "params.yaml", overrides + ["npu=x3"], own / "conf")
    proc = run_group(DVC_REPRO, RUN_TIMEOUT_S, cwd=own)
    assert proc.returncode != 0
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "pos_enc_layer_type" in errors[0], proc.stdout[-2000:] + proc.stderr[-2000:]


def test_queued_sweep_reruns_only_chunk_stages(repo):
    """`dvc exp run --queue` a chunk x left-chunks grid (2 x 1: the queue's behaviour, at the least
    cost), `dvc queue start -j 2`: both experiments with metrics, neither of which synthesized or
    trained anything (the README's sweep, at the tiny preset)."""
    dvc = [sys.executable, "-m", "dvc"]
    run(dvc + ["exp", "run", "--queue"] + [arg for o in BASE for arg in ("-S", o)]
        + ["-S", "streaming.chunk_size=2,4", "-S", "streaming.num_decoding_left_chunks=2"], repo)
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
    assert len(names) == 2, status
    for name in names:
        ran = stages_run(run(dvc + ["queue", "logs", name], repo))
        assert ran and not ran & {"synth", "train"}, (name, ran)
    shown = exp_show(repo)
    points = experiment_points(shown, "test")
    grid = {(p["chunk_size"], p["left_chunks"]) for p in points if p["artifact"] == "quantized"}
    assert {(2, 2), (4, 2)} <= grid


def uncached_copy(repo: Path, tmp_path: Path) -> Path:
    """A copy of the base repository whose evaluations decode for real, on Dask workers (one per
    core): no shard cache, one utterance per shard (`compute` is no DVC param: nothing reruns for it)."""
    work = tmp_path / "repo"
    shutil.copytree(repo, work, symlinks=True)
    shutil.rmtree(work / ".edgeasr", ignore_errors=True)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["compute"].update(workers=0, shard_utts=1)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


def stage_by_hand(work: Path, stage: str, **popen) -> subprocess.CompletedProcess:
    """A stage script run as the README's "by hand" runs do, in `work`, with a timeout."""
    return run_group([sys.executable, f"stages/{stage}.py"], 300, cwd=work, **popen)


def only_error_line(proc: subprocess.CompletedProcess) -> str:
    """The stage ended with exactly one `error:` line and no traceback; returns it."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def test_damaged_artifacts_stop_every_reader_with_one_line(repo, tmp_path):
    """A truncated graph, a corrupted one of the right size, a truncated calibration sample, a
    damaged manifest: each reader stops with one line naming the file, and writes no metrics."""
    work = tmp_path / "repo"
    shutil.copytree(repo, work, symlinks=True)
    encoder = work / "exp" / "export" / "cpu" / "encoder.onnx"
    encoder.write_bytes(encoder.read_bytes()[: encoder.stat().st_size // 2])  # a copy that stopped
    before = (work / "metrics" / "onnx.json").read_bytes()
    line = only_error_line(stage_by_hand(work, "eval_onnx"))
    assert "exp/export/cpu/encoder.onnx" in line and "truncated" in line and "dvc repro -f -s export" in line
    assert (work / "metrics" / "onnx.json").read_bytes() == before
    ctc = work / "exp" / "bpu" / "ctc.onnx"
    data = bytearray(ctc.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    ctc.write_bytes(bytes(data))
    line = only_error_line(stage_by_hand(work, "eval_bpu"))
    assert "exp/bpu/ctc.onnx" in line and "SHA-256" in line
    (work / "exp" / "compile" / "artifacts.json").write_text('{"stage": "compile", "artif')
    line = only_error_line(stage_by_hand(work, "eval_quant"))
    assert "exp/compile/artifacts.json" in line
    sample = sorted((work / "exp" / "calibration" / "encoder" / "chunk").glob("*.bin"))[0]
    sample.write_bytes(sample.read_bytes()[:100])
    shutil.copy(repo / "exp" / "bpu" / "ctc.onnx", ctc)  # only the sample is damaged now
    line = only_error_line(stage_by_hand(work, "compile"))
    assert sample.name in line and "damaged calibration sample" in line
    assert not (work / "exp" / "compile").exists()  # nothing eval_quant would take


def test_sigterm_mid_stage_stops_its_workers_and_keeps_nothing(repo, tmp_path):
    """A real SIGTERM to eval_torch while it decodes on its Dask workers: one line, exit 143, no
    exp/eval_torch (nor its .partial), every worker process gone; SIGKILL to a `dvc repro` process
    group leaves no exp/eval_torch (a .partial only), the next `dvc repro` leaves the workspace up to
    date, and the next run of the stage removes the .partial itself."""
    import psutil

    work = uncached_copy(repo, tmp_path)
    proc = subprocess.Popen([sys.executable, "stages/eval_torch.py"], cwd=work, stderr=subprocess.PIPE, text=True)
    partial = work / "exp" / "eval_torch.partial"
    children = []
    try:
        deadline = time.monotonic() + 120
        while len(children) < 2 and proc.poll() is None:  # the stage and its workers are up
            assert time.monotonic() < deadline, "the stage's Dask workers never started"
            children = psutil.Process(proc.pid).children(recursive=True) if partial.exists() else []
            time.sleep(0.05)
        assert proc.poll() is None, "eval_torch finished before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        stderr = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == ("error: eval_torch stopped by SIGTERM: it kept nothing it was "
                                               "writing (rerun it)")
    assert not (work / "exp" / "eval_torch").exists() and not partial.exists()
    gone, alive = psutil.wait_procs(children, timeout=20)
    for leftover in alive:  # stop what the test started, then fail
        leftover.kill()
    assert not alive, [p.pid for p in alive]

    repro = subprocess.Popen(DVC_REPRO + ["-f", "-s", "eval_torch"], cwd=work, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not partial.exists():
            assert time.monotonic() < deadline and repro.poll() is None, "eval_torch never started"
            time.sleep(0.05)
        group = [psutil.Process(repro.pid)] + psutil.Process(repro.pid).children(recursive=True)
        os.killpg(repro.pid, signal.SIGKILL)
        repro.wait(timeout=30)
    finally:
        if repro.poll() is None:
            os.killpg(repro.pid, signal.SIGKILL)
    psutil.wait_procs(group, timeout=20)
    assert not (work / "exp" / "eval_torch").exists()
    # The next run restores what dvc.lock records (its cache) or reruns the stage; the leftover
    # .partial is no output, and the stage removes it whenever it runs.
    run(DVC_REPRO, work)
    assert (work / "exp" / "eval_torch" / "reference.json").is_file()
    assert "up to date" in run([sys.executable, "-m", "dvc", "status"], work)
    stage_by_hand(work, "eval_torch")
    assert not partial.exists()


def test_a_full_disk_is_one_line_and_keeps_nothing(repo, tmp_path):
    """export under a file-size limit the kernel enforces (what a full disk or quota does to a write):
    one line naming the file, no exp/export and no .partial left."""
    import resource

    work = tmp_path / "repo"
    shutil.copytree(repo, work, symlinks=True)

    def small_files() -> None:  # in the child: writes past 64 KB fail with EFBIG instead of a signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    line = only_error_line(stage_by_hand(work, "export", preexec_fn=small_files))
    assert "File too large" in line and "export kept nothing" in line
    assert not (work / "exp" / "export").exists() and not (work / "exp" / "export.partial").exists()


def test_a_second_repro_in_the_same_workspace_is_refused(repo, tmp_path):
    """Two `dvc repro` at once: the second stops with DVC's lock message, the first finishes."""
    work = uncached_copy(repo, tmp_path)
    first = subprocess.Popen(DVC_REPRO + ["-f", "-s", "eval_torch"], cwd=work, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (work / "exp" / "eval_torch.partial").exists():
            assert time.monotonic() < deadline and first.poll() is None, "the first repro never started"
            time.sleep(0.05)
        second = run_group(DVC_REPRO, 120, cwd=work)
        # DVC's rwlock on the outputs the first run holds: "'<path>' is busy, it is being blocked by:
        # (PID ...: dvc repro ...)"; the second run stops before any stage.
        assert second.returncode != 0 and "is busy, it is being blocked by" in second.stdout + second.stderr
        assert "Running stage" not in second.stdout + second.stderr
        out = first.communicate(timeout=300)[0]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 0, out[-3000:]
