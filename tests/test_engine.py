"""The evaluation engine: the same reference and artifact metrics, bit for bit, serially, on 2 local Dask
workers and on a 2-worker loopback cluster whose workers run in an empty directory; a worker killed
mid-evaluation costs only rework; an interrupted evaluation resumes from its cached shards.

Every process a test starts is bound to 127.0.0.1 and stopped by its PID; loops are bounded."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import noise_bursts, write_model_dir
from edgeasr.decode import DecodeOptions
from edgeasr.evaluate import shards as shards_module
from edgeasr.evaluate.engine import ComputeSettings, Engine, ShardCache
from edgeasr.evaluate.reference import write_reference
from edgeasr.frontend import read_symbol_table

ARCH = "conformer_relpos_conv2d_swish_ln"
CONTEXTS = {"streaming": DecodeOptions(4, 2, beam_size=3, modes=("ctc_greedy", "ctc_prefix_beam")),
            "full": DecodeOptions(-1, -1, beam_size=3, modes=("ctc_greedy", "ctc_prefix_beam"))}
UTTS = 10


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    model_dir = root / "model"
    write_model_dir(model_dir, ARCH, feat_dim=80)
    rng = np.random.default_rng(3)
    lines = []
    for i in range(UTTS):
        wav = root / f"utt{i}.wav"
        soundfile.write(wav, noise_bursts(rng, 4 + i % 3), 16000)
        lines.append(json.dumps({"key": f"utt{i}", "wav": str(wav), "txt": "一二三"}, ensure_ascii=False))
    (root / "test.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root, model_dir


def settings(workers: int, scheduler=None, shard_utts: int = 3) -> ComputeSettings:
    return ComputeSettings("cluster" if scheduler else "local", workers, scheduler, shard_utts, None)


def reference(setup, engine: Engine, out: Path, cache: ShardCache = None) -> dict:
    root, model_dir = setup
    out.mkdir(parents=True, exist_ok=True)
    return write_reference(engine, cache or ShardCache(None, "test"), model_dir, 7, {"test": str(root / "test.list")},
                           CONTEXTS, read_symbol_table(model_dir / "units.txt"), 0, 1, out)


def outputs(out: Path, metrics: dict) -> tuple:
    """Everything a reference writes, timings aside."""
    def strip(d):
        return {k: strip(v) for k, v in d.items() if k not in ("rtf", "chunk_compute_ms")} if isinstance(d, dict) else d
    arrays = {c: dict(np.load(out / f"test.{c}.log_probs.npz")) for c in CONTEXTS}
    return strip(metrics), (out / "test.jsonl").read_text(), arrays


def same(a: tuple, b: tuple) -> bool:
    if a[:2] != b[:2] or a[2].keys() != b[2].keys():
        return False
    return all(a[2][c].keys() == b[2][c].keys() and all(np.array_equal(a[2][c][k], b[2][c][k]) for k in a[2][c])
               for c in a[2])


@pytest.fixture(scope="module")
def serial(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    with Engine(settings(1)) as engine:
        assert engine.serial
        return outputs(out, reference(setup, engine, out))


def test_two_local_workers_give_the_serial_result_bit_for_bit(setup, serial, tmp_path):
    with Engine(settings(2)) as engine:
        metrics = reference(setup, engine, tmp_path)
        assert len(engine.client.scheduler_info()["workers"]) == 2
    assert same(outputs(tmp_path, metrics), serial)
    assert serial[0]["test"]["utterances"] == UTTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(processes) -> None:
    for proc in processes:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_a_loopback_cluster_in_an_empty_directory_gives_the_serial_result(setup, serial, tmp_path):
    """`dask scheduler` + two `dask worker`s on 127.0.0.1, the workers started in an empty folder: no
    file of the workspace is reachable by path there, the artifacts and audio travel through Dask."""
    port, empty = free_port(), tmp_path / "empty"
    empty.mkdir()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen(dask + ["--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0",
                                      "--no-show"], cwd=empty, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                                           "1", "--host", "127.0.0.1", "--no-dashboard"], cwd=empty,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Engine(settings(0, address)) as engine:
            engine.start()
            deadline = time.monotonic() + 60
            while len(engine.client.scheduler_info()["workers"]) < 2:
                assert time.monotonic() < deadline, "the loopback workers did not register in 60 s"
                time.sleep(0.5)
            out = tmp_path / "out"
            metrics = reference(setup, engine, out)
        assert same(outputs(out, metrics), serial)
        assert not any(empty.iterdir())  # nothing was written where the workers run
    finally:
        stop(procs)


def test_a_killed_worker_costs_only_rework(setup, serial, tmp_path, monkeypatch):
    """SIGKILL to one of two workers after the first shard is back: Dask reruns its shards on the
    other, and the result is the serial one."""
    with Engine(settings(2, shard_utts=1)) as engine:
        killed = []
        put = ShardCache.put

        def put_then_kill(self, key, result):
            put(self, key, result)
            if not killed:
                pids = engine.client.run(os.getpid)
                victim = sorted(pids.values())[0]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        monkeypatch.setattr(ShardCache, "put", put_then_kill)
        metrics = reference(setup, engine, tmp_path)
    assert killed and same(outputs(tmp_path, metrics), serial)


def test_an_interrupted_evaluation_resumes_from_its_cached_shards(setup, serial, tmp_path, monkeypatch):
    cache = ShardCache(tmp_path / "cache", "test")
    decoded = []
    decode_with = shards_module.decode_with

    def counting(backend, float_backend, task):
        if len(decoded) == 3:
            raise KeyboardInterrupt  # the stage is stopped after three shards
        decoded.append(len(task.utterances))
        return decode_with(backend, float_backend, task)

    monkeypatch.setattr(shards_module, "decode_with", counting)
    with Engine(settings(1)) as engine, pytest.raises(KeyboardInterrupt):
        reference(setup, engine, tmp_path / "first", cache)
    assert len(decoded) == 3
    decoded.clear()

    def only_counting(backend, float_backend, task):
        decoded.append(len(task.utterances))
        return decode_with(backend, float_backend, task)

    monkeypatch.setattr(shards_module, "decode_with", only_counting)
    with Engine(settings(1)) as engine:
        metrics = reference(setup, engine, tmp_path / "second", cache)
    assert same(outputs(tmp_path / "second", metrics), serial)
    # 10 utterances in shards of 3: 4 shards per context, 8 in all; the 3 finished ones are not redone
    assert len(decoded) == 5 and len(list((tmp_path / "cache").rglob("*.npz"))) == 8
    assert not list((tmp_path / "cache").rglob("*.partial"))


def test_cluster_without_an_address_is_a_one_line_error(monkeypatch):
    from edgeasr.errors import EdgeAsrError

    monkeypatch.delenv("EDGEASR_DASK_SCHEDULER", raising=False)
    with pytest.raises(EdgeAsrError, match="compute=cluster: set compute.scheduler=tcp://HOST:8786"):
        Engine(ComputeSettings("cluster", 0, None, 16, None))
