"""Where decoding runs: serially in the stage's process, on a Dask LocalCluster of this machine's cores,
or on a Dask cluster by its scheduler's address (the `compute` params section, `conf/compute/`).

    compute=local  compute.workers=0   one single-threaded worker process per core, bound to 127.0.0.1
    compute=local  compute.workers=1   serial, in the stage's own process (no Dask at all)
    compute=cluster compute.scheduler=tcp://host:8786   (or $EDGEASR_DASK_SCHEDULER)

NOTE: `compute` is read by `load_compute`, never declared as a stage param in dvc.yaml: where an
evaluation runs cannot change a number it reports (shards are merged in utterance order, tested
bit for bit against serial), so changing it must not rerun anything.

Tasks are pure functions of their arguments (artifact bytes, audio bytes, settings): a worker needs
the project installed and nothing else, no shared filesystem. A killed worker's tasks are rerun by
Dask on the others; finished shards are cached on disk (`ShardCache`) so an interrupted stage
resumes where it stopped.
"""

import ctypes
import hashlib
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import EdgeAsrError

log = logging.getLogger(__name__)
SCHEDULER_VARIABLE = "EDGEASR_DASK_SCHEDULER"
CLOSE_TIMEOUT_S = 60  # the most a stage waits for its client and LocalCluster to close


MALLOC_TRIM_VARIABLE = "MALLOC_TRIM_THRESHOLD_"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def undo_malloc_trim_cap() -> None:
    """Undo what Dask's nanny sets in every worker it spawns, local or on a cluster
    (`distributed.nanny.pre-spawn-environ`): MALLOC_TRIM_THRESHOLD_=65536. Setting it also freezes glibc's
    mmap threshold at 128 KiB, so every larger temporary of an eager PyTorch forward becomes an mmap, page
    faults and an munmap: the 110M preset's reference decoded 24-30 % slower in one process (measured),
    and two such workers contend for memory further. Restores glibc's own dynamic maximum (mmap above
    32 MiB, trim above 64 MiB) and removes the variable, so that a process a task starts (the RK3588
    simulator) does not inherit it. Does nothing where the variable is not set."""
    if os.environ.pop(MALLOC_TRIM_VARIABLE, None) is None:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: the variable meant nothing here
        return
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(M_TRIM_THRESHOLD, 64 << 20)


def worker_task(fn: Callable[[Any, Any], Any], task: Any, shared: Any) -> Any:
    """What every engine task runs on a worker: fn(task, shared) in a process set up for decoding."""
    undo_malloc_trim_cap()
    return fn(task, shared)


@dataclass(frozen=True)
class ComputeSettings:
    name: str  # local | cluster
    workers: int  # local: 0 = one per core, 1 = serial in this process, n = n worker processes
    scheduler: Optional[str]  # cluster: the scheduler's address (tcp://host:8786)
    shard_utts: int  # utterances per task
    cache_dir: Optional[str]  # finished shards, keyed by content (null: no cache)


def local_workers(settings: ComputeSettings) -> int:
    return settings.workers if settings.workers > 0 else (os.cpu_count() or 1)


class Engine:
    """`run(fn, tasks, shared, digest, on_result)`: fn(task, shared) for every task. Serial when one local
    worker is asked for; else a Dask client, started when a run has two tasks or more (a stage whose
    shards are all cached, or that has one shard, starts nothing): a LocalCluster started and stopped here, or the cluster at the scheduler's
    address. At most `window` tasks are in flight, so their inputs (audio) never need to be in memory
    at once."""

    def __init__(self, settings: ComputeSettings):
        if settings.name not in ("local", "cluster"):
            raise EdgeAsrError(f"compute.name={settings.name!r}: use local or cluster")
        self.settings = settings
        self.address = settings.scheduler or (os.environ.get(SCHEDULER_VARIABLE) if settings.name == "cluster" else None)
        if settings.name == "cluster" and not self.address:
            raise EdgeAsrError(f"compute=cluster: set compute.scheduler=tcp://HOST:8786 or ${SCHEDULER_VARIABLE}")
        self.client: Any = None
        self.cluster: Any = None
        self._shared: Optional[Tuple[str, Any]] = None  # (digest, the scattered data on every worker)

    @property
    def serial(self) -> bool:
        return self.settings.name == "local" and local_workers(self.settings) == 1

    def __enter__(self) -> "Engine":
        return self

    def start(self) -> None:
        """Connect (or start the LocalCluster) now; run() does it at its first task."""
        from distributed import Client, LocalCluster  # optional until a run asks for workers

        logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines would bury the stage's
        if self.address:
            try:
                self.client = Client(self.address, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise EdgeAsrError(f"compute.scheduler={self.address}: no Dask scheduler there ({exc})") from None
        else:
            self.cluster = LocalCluster(n_workers=local_workers(self.settings), threads_per_worker=1,
                                        processes=True, host="127.0.0.1", dashboard_address=None,
                                        silence_logs=logging.WARNING)
            self.client = Client(self.cluster)
        # NOTE: Dask's active memory manager (on by default) drops every replica of a broadcast artifact but
        # one within seconds of no task waiting on it; the scheduler then sends each later shard of it to the
        # one worker still holding it, rather than copy 400 MB. Measured at the 110M preset, with the rest of
        # the old engine: 2 workers no faster than 1. The engine keeps one artifact on the workers at a time
        # (`run`), so nothing needs dropping.
        self.client.amm.stop()
        log.info("compute: %s, %d workers", self.address or "LocalCluster on 127.0.0.1", self.worker_count())

    def worker_count(self) -> int:
        """Workers the scheduler has now.

        NOTE: not `len(client.scheduler_info()["workers"])`: distributed 2026.8 returns its cached identity
        (which, its docstring says, may hold no per-worker entries) when the query fails or another refresh
        lands in between; that count was 0 once with two workers running (a CI rehearsal, 2026-12-04).
        `nthreads()` returns the scheduler's answer itself."""
        return len(self.client.nthreads())

    def __exit__(self, *exc: Any) -> None:
        self._shared = None
        # NOTE: bounded: LocalCluster.close() waits for its workers without a limit by default; what it
        # leaves is this process's children, which end with it (Dask's worker processes are daemonic).
        try:
            if self.client is not None:
                self.client.close(timeout=CLOSE_TIMEOUT_S)
            if self.cluster is not None:
                self.cluster.close(timeout=CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("compute: Dask did not close in %d s; a LocalCluster's workers end with this process",
                        CLOSE_TIMEOUT_S)

    def run(self, fn: Callable[[Any, Any], Any], tasks: Iterable[Tuple[Any, Any]], shared: Any, digest: str,
            on_result: Callable[[Any, Any], None], window: int = 0) -> None:
        """fn(task, shared) for every (tag, task); on_result(tag, result) as each finishes (any order).
        `shared` (artifact bytes) is sent to every worker once, by its digest, and stays there until a run
        with another digest replaces it: one artifact on the workers at a time. Tasks are drawn from the
        iterable only as slots free up (at most `window` in flight)."""
        if self.serial:
            for tag, task in tasks:
                on_result(tag, fn(task, shared))
            return
        pending = iter(tasks)
        first, second = next(pending, None), next(pending, None)
        if first is None:
            return
        if second is None and self.client is None:  # one shard: nothing to parallelize, start nothing
            on_result(first[0], fn(first[1], shared))
            return
        if self.client is None:
            self.start()
        if self._shared is None or self._shared[0] != digest:
            # NOTE: the one before is dropped first. Kept, every artifact of a stage stayed on every worker:
            # at the 110M preset ten ~400 MB graphs, ~6 GB per worker with their sessions (measured; ~2 GB now).
            self._shared = None
            self._shared = (digest, self.client.scatter(shared, broadcast=True, hash=False))
        data = self._shared[1]
        from distributed import as_completed

        tags: Dict[str, Any] = {}
        futures = as_completed([])

        def submit(item: Optional[Tuple[Any, Any]]) -> None:
            if item is not None:
                future = self.client.submit(worker_task, fn, item[1], data, pure=False, retries=2)
                tags[future.key] = item[0]
                futures.add(future)

        submit(first)
        submit(second)
        workers = max(1, self.worker_count())
        for _ in range((window or 4 * workers) - 2):
            submit(next(pending, None))
        for future in futures:
            on_result(tags.pop(future.key), future.result())
            future.release()
            submit(next(pending, None))


class ShardCache:
    """Finished shards on disk, keyed by everything a shard's result depends on (artifact content,
    settings, utterance keys and audio, the code that decodes): an interrupted evaluation reruns only
    the shards it had not finished. Outside DVC's outputs; never read as a metric by itself."""

    def __init__(self, folder: Optional[Path], code_digest: str):
        self.folder, self.code_digest = folder, code_digest

    def key(self, *parts: bytes) -> str:
        digest = hashlib.sha256(self.code_digest.encode())
        for part in parts:
            digest.update(hashlib.sha256(part).digest())
        return digest.hexdigest()

    def get(self, key: str) -> Optional["ShardResult"]:
        if self.folder is None:
            return None
        path = self.folder / key[:2] / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as stored:  # data only: nothing is executed
                meta = json.loads(str(stored["meta"]))
                arrays = [stored[f"a{i}"] for i in range(int(meta.pop("arrays")))]
        except (OSError, ValueError, KeyError):
            return None
        return ShardResult(meta["records"], arrays or None)

    def put(self, key: str, result: "ShardResult") -> None:
        if self.folder is None:
            return
        path = self.folder / key[:2] / f"{key}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        arrays = result.log_probs or []
        meta = json.dumps({"records": result.records, "arrays": len(arrays)})
        with open(partial, "wb") as f:
            np.savez(f, meta=np.array(meta), **{f"a{i}": a for i, a in enumerate(arrays)})
        partial.replace(path)  # a killed run leaves a .partial, never a half-written shard


@dataclass
class ShardResult:
    """One shard decoded: a record per utterance (hypotheses, timings, comparisons; JSON values) and,
    for the reference, the (T', V) CTC log-probs."""

    records: List[dict]
    log_probs: Optional[List[np.ndarray]] = None


def code_digest(root: Path) -> str:
    """A digest of edgeasr's source: a cached shard of other code is never reused."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def load_compute(root: Path = Path(".")) -> ComputeSettings:
    """The `compute` section of params.yaml (never a stage param, see the module docstring)."""
    from ..params import dataclass_from, load_section

    return dataclass_from(ComputeSettings, load_section("compute", root), "compute")


@contextmanager
def compute_engine(root: Path = Path(".")) -> Iterator[Tuple[Engine, ShardCache]]:
    """The engine `compute` asks for, started and stopped around the block, and the shard cache."""
    settings = load_compute(root)
    with Engine(settings) as engine:
        folder = root / settings.cache_dir if settings.cache_dir else None
        yield engine, ShardCache(folder, code_digest(Path(__file__).resolve().parents[1]))
