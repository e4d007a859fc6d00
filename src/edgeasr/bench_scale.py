"""Benchmark of scale: how fast the evaluation runs on 1 and 2 local workers and on a 2-worker loopback
Dask cluster, and what that projects for a real test set. A table, never an assertion.

    python -m edgeasr.bench_scale [WORKSPACE] [--utts 80] [--shards 20] [--hours 10] [--only cpu 'pytorch reference']

In a workspace where `dvc repro` has run (any preset: the x3_110m one is the seed's scale), decodes
the first `--utts` utterances of the first test set exactly as the stages do (the PyTorch reference in
both contexts, then every runnable artifact of exp/export, exp/bpu and exp/compile, all through
`evaluate.shards` on the engine, no shard cache) and prints, per engine and evaluation, utterances/s
and audio-seconds/s, the scaling efficiency against serial, and the projected wall time of one
configuration's evaluations and of a 3 x 3 sweep for `--hours` of audio. Evaluations run as a stage
runs them, one artifact on the workers at a time: each is decoded twice in a row, the second time is
the steady state (each worker already holds the artifact), the difference the fixed cost an evaluation
pays once (sending and opening a 110M-parameter artifact), kept apart so the projection charges it
once, not per utterance. Fixed costs (export, calibrate, compile) do not grow with the test set and are
not in the projection; the stages' `resources:` lines give them. Each evaluation is cut into `--shards`
shards: a 10-hour set has hundreds, so the wait for its last one is nothing there, while 8 shards on 2
workers idle one worker for up to a quarter of the wall (what this bench measured before).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import yaml
from omegaconf import OmegaConf

from .artifact.manifest import read_manifest
from .errors import EdgeAsrError
from .evaluate.artifacts import artifact_options
from .evaluate.backends import model_artifact
from .evaluate.contexts import decode_contexts
from .evaluate.engine import ComputeSettings, Engine, ShardCache
from .evaluate.reference import read_info, read_reference, reference_symbols
from .evaluate.shards import decode_sharded, pack_backend
from .frontend.dataset import scan_utterances
from .frontend.tokens import id_to_token
from .paths import BPU, COMPILE, EVAL_TORCH, EXPORT


@contextmanager
def loopback_cluster(workers: int) -> Iterator[str]:
    """`dask scheduler` and `workers` single-threaded `dask worker`s on 127.0.0.1, stopped by PID."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--dashboard-address", ":0", "--no-show"], **quiet)]
    procs += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                "--host", "127.0.0.1", "--no-dashboard"], **quiet) for _ in range(workers)]
    try:
        yield address
    finally:
        for proc in procs:
            os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def wait_for_workers(engine: Engine, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while engine.worker_count() < count:
        if time.monotonic() > deadline:
            raise EdgeAsrError(f"{count} loopback workers did not register in {timeout_s:.0f} s")
        time.sleep(0.5)


def warm_up() -> None:
    """Run on every worker before timing: the imports a fresh worker pays at its first task."""
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401

    from .evaluate import shards  # noqa: F401


def evaluations(workspace: Path, threads: int, only: Sequence[str] = ()
                ) -> Iterator[Tuple[str, object, Optional[str]]]:
    """(label, packed backend, the artifact's context or None for the reference) of everything timed (those
    labelled in `only`, else all), packed one at a time (as the stages do: one artifact's bytes in memory
    at once); what `only` leaves out is never read."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    model_dir = workspace / params["model"]["dir"]
    if not only or "pytorch reference" in only:
        yield "pytorch reference", pack_backend(model_artifact(model_dir), model_dir, threads), None
    for folder in (EXPORT, BPU, COMPILE):
        try:
            manifest = read_manifest(workspace / folder)
        except EdgeAsrError:
            continue
        for name, artifact in manifest.artifacts.items():
            if artifact.runnable and (not only or name in only):
                yield name, pack_backend(artifact, manifest.folder, threads), name


Measured = Dict[str, Tuple[float, float, int]]  # label -> (seconds, audio seconds, utterances)


def measure(engine: Engine, workspace: Path, utts: int, only: Sequence[str] = ()) -> Tuple[Measured, Measured]:
    """(first, second) decoding of each evaluation on this engine (those labelled in `only`, else all),
    label -> (seconds, audio seconds, utterances): the first pays sending and opening the artifact, the
    second is the steady state."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    name, data_list = next(iter(params["data"]["test_sets"].items()))
    reference_dir = workspace / EVAL_TORCH
    found = scan_utterances(workspace / data_list, utts, int(read_info(reference_dir)["min_frames"])).utterances
    scanned = [s.utt for s in found]
    tokens = id_to_token(reference_symbols(reference_dir))
    contexts = decode_contexts(OmegaConf.create(params["compare"]), OmegaConf.create(params["streaming"]))
    reference = read_reference(reference_dir, name)
    if len(scanned) > len(reference.keys):
        raise EdgeAsrError(f"{reference_dir}: the reference holds {len(reference.keys)} utterances of {name}, "
                           f"--utts {utts} asks for {len(scanned)} (compare.max_utts limits it)")
    cache = ShardCache(None, "bench")
    audio = sum(s.seconds for s in found)
    first: Measured = {}
    second: Measured = {}
    for label, packed, artifact_name in evaluations(workspace, int(params["compare"]["threads"]), only):
        for result in (first, second):
            start = time.perf_counter()
            if artifact_name is None:
                for opts in contexts.values():
                    decode_sharded(engine, cache, packed, scanned, opts, tokens, label,
                                   log_prob_sink=lambda i, a: None)
            else:
                artifact = packed.artifact
                opts = None if artifact.backend == "sherpa_onnx" else artifact_options(artifact, contexts)
                log_probs = reference.log_probs(artifact.context) if artifact.frames_align and opts else None
                decode_sharded(engine, cache, packed, scanned, opts, tokens, label,
                               (lambda i: log_probs(i)) if log_probs else None)
            result[label] = (time.perf_counter() - start, audio, len(scanned))
    return first, second


def table(runs: Dict[str, Tuple[Measured, Measured]], hours: float) -> str:
    """runs: engine -> (first, second decoding of each evaluation) over the same utterances. The second
    is the steady state (every worker already holds the artifact); the difference is the fixed cost an
    evaluation pays once (sending and opening its artifact), which a 10-hour set amortizes."""
    serial_cold, serial = runs["serial (1 worker)"]
    lines = [f"| evaluation | {' | '.join(f'{e}: utt/s, audio s/s, fixed s' for e in runs)} | efficiency, 2 workers |",
             "|---|" + "---|" * (len(runs) + 1)]
    for label in serial:
        cells = []
        for cold, warm in runs.values():
            seconds, audio, n = warm[label]
            cells.append(f"{n / seconds:.2f}, {audio / seconds:.2f}, {max(0.0, cold[label][0] - seconds):.1f}")
        two = runs.get("2 local workers", (serial_cold, serial))[1][label]
        lines.append(f"| {label} | {' | '.join(cells)} | {serial[label][0] / two[0] / 2:.2f} |")
    lines.append("")
    audio_total = hours * 3600.0
    for engine, (cold, warm) in runs.items():
        per_audio = sum(seconds / audio for seconds, audio, _ in warm.values())  # s of compute per s of audio
        fixed = sum(max(0.0, cold[label][0] - warm[label][0]) for label in warm)
        config_h = (per_audio * audio_total + fixed) / 3600.0
        lines.append(f"{engine}: {per_audio:.3f} s per audio second over every evaluation + {fixed:.0f} s fixed "
                     f"-> one configuration on {hours:g} h of audio {config_h:.1f} h, a 3 x 3 sweep "
                     f"{9 * config_h:.1f} h")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", nargs="?", default=".", type=Path)
    parser.add_argument("--utts", type=int, default=80)
    parser.add_argument("--shards", type=int, default=20, help="shards per evaluation")
    parser.add_argument("--hours", type=float, default=10.0)
    parser.add_argument("--only", nargs="+", default=(), help="evaluations to time, by label (default: all)")
    args = parser.parse_args(argv)
    runs: Dict[str, Tuple[Measured, Measured]] = {}
    shard = max(1, -(-args.utts // args.shards))
    with tempfile.TemporaryDirectory():
        with Engine(ComputeSettings("local", 1, None, shard, None)) as engine:
            runs["serial (1 worker)"] = measure(engine, args.workspace, args.utts, args.only)
        with Engine(ComputeSettings("local", 2, None, shard, None)) as engine:
            engine.start()  # the cluster's start-up and the workers' imports are not the evaluation's
            engine.client.run(warm_up)
            runs["2 local workers"] = measure(engine, args.workspace, args.utts, args.only)
        with loopback_cluster(2) as address, Engine(ComputeSettings("cluster", 0, address, shard, None)) as engine:
            engine.start()
            wait_for_workers(engine, 2)
            engine.client.run(warm_up)
            runs["2-worker loopback cluster"] = measure(engine, args.workspace, args.utts, args.only)
    print(f"workspace {args.workspace}, {args.utts} utterances, shards of {shard}, {os.cpu_count()} cores")
    print(table(runs, args.hours))


if __name__ == "__main__":
    main()
