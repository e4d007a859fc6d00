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
        assert engine.worker_count() == 2
    assert same(outputs(tmp_path, metrics), serial)
    assert serial[0]["test"]["utterances"] == UTTS


def shared_size(task: int, shared: bytes) -> int:
    return task + len(shared)


def held_bytes(dask_worker) -> list:
    return sorted(value for value in dask_worker.data.values() if isinstance(value, bytes))


def test_one_artifact_on_the_workers_at_a_time():
    """A run with another digest drops the data the run before sent: at the 110M preset every artifact
    kept on every worker (ten ~400 MB graphs) held ~6 GB per worker."""
    got = {}
    with Engine(settings(2)) as engine:
        engine.run(shared_size, [(i, i) for i in range(4)], b"a" * 10, "digest-a", got.__setitem__)
        assert b"a" * 10 in sum(engine.client.run(held_bytes).values(), [])
        engine.run(shared_size, [(i, i) for i in range(4)], b"b" * 20, "digest-b", got.__setitem__)
        deadline = time.monotonic() + 20  # the scheduler forgets released data asynchronously
        while b"a" * 10 in sum(engine.client.run(held_bytes).values(), []):
            assert time.monotonic() < deadline, "the first run's data is still on a worker after 20 s"
            time.sleep(0.2)
        assert b"b" * 20 in sum(engine.client.run(held_bytes).values(), [])
    assert got == {i: i + 20 for i in range(4)}


def test_the_artifact_stays_on_every_worker_between_runs():
    """Dask's active memory manager drops broadcast replicas within seconds of no task waiting on them,
    and the scheduler then sends every shard of a 400 MB artifact to the one worker left holding it (the
    110M preset's evaluations ran no faster on 2 workers than on 1): between two runs of one artifact (two test sets, two
    contexts) both workers keep it."""
    got = {}
    with Engine(settings(2)) as engine:
        engine.run(shared_size, [(i, i) for i in range(4)], b"c" * 30, "digest-c", got.__setitem__)
        time.sleep(4)  # twice the manager's default interval (distributed.scheduler.active-memory-manager)
        held = engine.client.run(held_bytes)
    assert len(held) == 2 and all(b"c" * 30 in values for values in held.values())


def malloc_trim_variable(task: int, shared: bytes):
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_tasks_run_without_the_nannys_malloc_trim_cap():
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (glibc then maps every temporary
    above 128 KiB anew: eager PyTorch 24-30 % slower); the engine's tasks undo it and drop the variable."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {"65536"}
    got = {}
    with Engine(settings(2)) as engine:
        engine.run(malloc_trim_variable, [(i, i) for i in range(4)], b"", "digest", got.__setitem__)
    assert got == {i: None for i in range(4)}


def test_a_process_keeps_a_bounded_number_of_backends_open(setup, tmp_path, monkeypatch):
    """Opening a third packed backend closes the least recently used one (its sessions and files)."""
    import shutil
    import tempfile

    from edgeasr.evaluate.backends import model_artifact

    _, model_dir = setup
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # where opened() copies each backend's files
    packs = []
    for i in range(shards_module.MAX_OPEN_BACKENDS + 1):
        copy = shutil.copytree(model_dir, tmp_path / f"model{i}")
        packs.append(shards_module.pack_backend(model_artifact(copy), copy, 1))
    for packed in packs:
        shards_module.opened(packed)
    digests = [p.digest for p in packs]
    assert list(shards_module._OPENED) == digests[1:]
    shards_module.opened(packs[1])  # used again: now the most recent, packs[2] is next to go
    assert list(shards_module._OPENED) == [digests[2], digests[1]]
    assert len(list(private.glob("edgeasr-backend-*"))) == shards_module.MAX_OPEN_BACKENDS  # packs[0]'s removed


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
            while engine.worker_count() < 2:
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


def test_shards_are_decoded_longest_first(setup, serial, tmp_path, monkeypatch):
    """The shard with the most audio goes first, so the last to finish are the shortest; the result is
    the one decoded in utterance order."""
    root, _ = setup
    order = []
    decode_with = shards_module.decode_with

    def recording(backend, float_backend, task):
        order.append([utt.key for utt, _, _ in task.utterances])
        return decode_with(backend, float_backend, task)

    monkeypatch.setattr(shards_module, "decode_with", recording)
    with Engine(settings(1, shard_utts=2)) as engine:  # shards of 3 would hold equal audio here
        metrics = reference(setup, engine, tmp_path)
    assert same(outputs(tmp_path, metrics), serial)
    size = {f"utt{i}": (root / f"utt{i}.wav").stat().st_size for i in range(UTTS)}
    shards = [[f"utt{i}" for i in range(start, min(start + 2, UTTS))] for start in range(0, UTTS, 2)]
    expected = sorted(shards, key=lambda keys: -sum(size[k] for k in keys))
    assert expected != shards and order == expected * len(CONTEXTS)  # one pass per context


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


def test_closing_the_engine_is_bounded(monkeypatch, caplog):
    """LocalCluster.close() has no limit of its own: past CLOSE_TIMEOUT_S the engine logs and goes on."""
    from edgeasr.evaluate import engine as engine_module

    monkeypatch.setattr(engine_module, "CLOSE_TIMEOUT_S", 0.001)
    engine = Engine(settings(2))
    engine.start()
    try:
        with caplog.at_level("WARNING", logger=engine_module.__name__):
            engine.__exit__(None, None, None)
        assert "did not close in" in caplog.text
    finally:
        engine.cluster.close(timeout=60)  # what the test started


def test_cluster_without_an_address_is_a_one_line_error(monkeypatch):
    from edgeasr.errors import EdgeAsrError

    monkeypatch.delenv("EDGEASR_DASK_SCHEDULER", raising=False)
    with pytest.raises(EdgeAsrError, match="compute=cluster: set compute.scheduler=tcp://HOST:8786"):
        Engine(ComputeSettings("cluster", 0, None, 16, None))
