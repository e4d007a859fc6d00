"""One shard of an evaluation as a self-contained task: a backend packed as bytes, utterances as audio
bytes, the settings; decoded wherever it runs (this process or a Dask worker) by the same loop.

A worker opens each packed backend once (keyed by the digest of its bytes) and keeps it for the
shards that follow. Per utterance the task returns a JSON record (hypotheses, timings, chunk count,
the largest log-prob difference to the reference, the cosine dot products against the float graphs)
so the client merges shards in utterance order and gets exactly the serial result: sums are taken
per utterance, in order, as the serial loop takes them.
"""

import atexit
import hashlib
import json
import tempfile
import time
import zipfile
from collections import OrderedDict
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tqdm import tqdm

from ..artifact.manifest import Artifact
from ..decode import DecodeOptions
from ..frontend import SAMPLE_RATE, compute_fbank, read_audio
from ..frontend.datalist import Utterance
from ..frontend.dataset import PreparedUtterance
from .backends import Opener, Runnable, float_graphs, open_backend
from .engine import Engine, ShardCache, ShardResult
from .runner import Decoded, decode_records, merge
from .sherpa import SherpaRecognizer


@dataclass(frozen=True)
class PackedBackend:
    """An artifact and the bytes of every file it (and its float graphs) needs, laid out as on the
    client (`tree` paths are the files' absolute paths without the leading /)."""

    artifact: Artifact
    folder: str  # the manifest folder, as a tree path
    blobs: Mapping[str, bytes]  # tree path -> file content
    threads: int
    digest: str  # of the artifact entry and every blob: the worker's key for the opened backend
    opener: Optional[Opener] = None  # for a backend of a higher layer (the RK3588 simulator): run where it opens


def _tree(path: Path) -> str:
    return str(path.resolve()).lstrip("/")


def pack_backend(artifact: Artifact, folder: Path, threads: int, opener: Optional[Opener] = None) -> PackedBackend:
    files = [artifact.path(folder, role) for role in artifact.files]
    files += [folder / rel for rel in (artifact.cosine_to or {}).values()]
    blobs = {_tree(path): path.read_bytes() for path in files}
    digest = hashlib.sha256(json.dumps(asdict(artifact), sort_keys=True, default=str).encode())
    for name in sorted(blobs):
        digest.update(name.encode())
        digest.update(hashlib.sha256(blobs[name]).digest())
    return PackedBackend(artifact, _tree(folder), blobs, threads, digest.hexdigest(), opener)


# NOTE: at most this many backends stay open per process. Evaluations go artifact by artifact, so one
# would do for a stage; two keep a queued sweep's experiments that share a cluster from reopening at
# every shard. Unbounded, a worker kept every artifact of a stage open (at the 110M preset ten, with the
# engine's copies of their bytes ~6 GB per worker, measured).
MAX_OPEN_BACKENDS = 2
_OPENED: "OrderedDict[str, Tuple[Runnable, Optional[Runnable], ExitStack]]" = OrderedDict()  # digest -> opened
_STACK = ExitStack()  # what opened backends hold (sessions, temp folders, simulator processes)
atexit.register(_STACK.close)  # released when the process ends, the last opened first


def opened(packed: PackedBackend) -> Tuple[Runnable, Optional[Runnable]]:
    """The packed backend and its float graphs, opened once per process from a private copy of its files;
    the least recently used beyond MAX_OPEN_BACKENDS is closed (its sessions, files, simulator process)."""
    if packed.digest in _OPENED:
        _OPENED.move_to_end(packed.digest)
    else:
        while len(_OPENED) >= MAX_OPEN_BACKENDS:
            _OPENED.popitem(last=False)[1][2].close()
        stack = _STACK.enter_context(ExitStack())
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgeasr-backend-")))
        for name, data in packed.blobs.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        folder = root / packed.folder
        openers = {packed.artifact.backend: packed.opener} if packed.opener else None
        _OPENED[packed.digest] = (open_backend(packed.artifact, folder, packed.threads, stack, openers),
                                  float_graphs(packed.artifact, folder, packed.threads), stack)
    backend, float_backend, _ = _OPENED[packed.digest]
    return backend, float_backend


@dataclass(frozen=True)
class ShardTask:
    utterances: Sequence[Tuple[Utterance, str, bytes]]  # (utterance, audio file suffix, its bytes), in order
    opts: Optional[DecodeOptions]  # None: an audio recognizer (sherpa-onnx), streaming CTC greedy
    tokens: Mapping[int, str]
    desc: str
    reference_log_probs: Optional[Sequence[np.ndarray]] = None  # frames align: measure the largest |diff|
    keep_log_probs: bool = False  # the reference: return its log-probs


def decode_shard(task: ShardTask, packed: PackedBackend) -> ShardResult:
    """A Dask task (or a serial step): the packed backend, opened once per process, over the shard."""
    backend, float_backend = opened(packed)
    return decode_with(backend, float_backend, task)


def audio_payload(utt: Utterance) -> Tuple[Utterance, str, bytes]:
    """An utterance with its audio file's bytes: what travels to a worker (no shared filesystem)."""
    path = Path(utt.wav)
    return utt, path.suffix, path.read_bytes()


def prepare_payload(payload: Sequence[Tuple[Utterance, str, bytes]], features: bool = True
                    ) -> List[PreparedUtterance]:
    """Audio bytes -> PreparedUtterance, read as the stages read files; `feats` holds the fbank features
    (timed, as load_utterances times them), or the samples themselves when features=False."""
    prepared = []
    with tempfile.TemporaryDirectory(prefix="edgeasr-audio-") as tmp:
        for index, (utt, suffix, data) in enumerate(payload):
            start = time.perf_counter()
            wav = Path(tmp) / f"{index}{suffix}"
            wav.write_bytes(data)
            audio = read_audio(wav)
            feats = compute_fbank(audio) if features else audio
            prepared.append(PreparedUtterance(utt, feats, len(audio) / SAMPLE_RATE,
                                              time.perf_counter() - start if features else 0.0))
    return prepared


def decode_with(backend: Runnable, float_backend: Optional[Runnable], task: ShardTask) -> ShardResult:
    """Audio -> features here (never held for a whole set), then the one loop (`runner.decode_records`)."""
    if isinstance(backend, SherpaRecognizer):
        prepared = prepare_payload(task.utterances, features=False)
        return ShardResult(recognizer_records(backend, prepared, task.desc))
    prepared = prepare_payload(task.utterances)
    reference = task.reference_log_probs
    records, kept = decode_records(backend, prepared, task.opts, task.tokens, task.desc, task.keep_log_probs,
                                   (lambda i: reference[i]) if reference is not None else None, float_backend)
    return ShardResult(records, kept if task.keep_log_probs else None)


def recognizer_records(recognizer: SherpaRecognizer, prepared: Sequence[PreparedUtterance], desc: str) -> List[dict]:
    """A recognizer with its own front end, fed audio (`feats` holds the samples here): its records."""
    records = []
    for p in tqdm(prepared, desc=desc, unit="utt"):
        start = time.perf_counter()
        text = recognizer.transcribe(p.feats)
        records.append({"key": p.utt.key, "seconds": p.seconds, "decode_seconds": time.perf_counter() - start,
                        "hyps": {"ctc_greedy": text}})
    return records


class NpzWriter:
    """An .npz written array by array (np.load reads it like np.savez's): a set's log-probs are never
    all in memory."""

    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path, "w", allowZip64=True)

    def add(self, name: str, array: np.ndarray) -> None:
        with self.zip.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)

    def close(self) -> None:
        self.zip.close()


def longest_first(shards: Sequence[Sequence[int]], utterances: Sequence[Utterance]) -> List[int]:
    """Shard numbers, the most audio first (by file size; ties in shard order). NOTE: the shards that
    finish last are then the shortest, so the workers run out of work together: submitted in utterance
    order, the last shard of a pass kept one of 2 workers busy alone for 3-8 % of the pass (x3_110m,
    20 shards, measured with Dask's task stream). Results are merged in utterance order whatever the
    order of submission."""
    size = [sum(Path(utterances[i].wav).stat().st_size for i in shard) for shard in shards]
    return sorted(range(len(shards)), key=lambda number: -size[number])


def decode_sharded(engine: Engine, cache: ShardCache, packed: PackedBackend, utterances: Sequence[Utterance],
                   opts: Optional[DecodeOptions], tokens: Mapping[int, str], desc: str,
                   reference_log_probs: Optional[Callable[[int], np.ndarray]] = None,
                   log_prob_sink: Optional[Callable[[int, np.ndarray], None]] = None) -> Decoded:
    """The utterances in shards of `compute.shard_utts` over the engine, each finished shard cached.
    Returns the records merged in utterance order; with `log_prob_sink`, every utterance's log-probs
    are handed to it (by index) instead of kept."""
    size = max(1, engine.settings.shard_utts)
    shards = [list(range(start, min(start + size, len(utterances)))) for start in range(0, len(utterances), size)]
    results: Dict[int, ShardResult] = {}
    settings = json.dumps({"opts": asdict(opts) if opts else None, "keep": log_prob_sink is not None}, sort_keys=True)

    def finished(tag: Tuple[int, str], result: ShardResult) -> None:
        number, key = tag
        cache.put(key, result)
        if log_prob_sink is not None:
            for index, array in zip(shards[number], result.log_probs or []):
                log_prob_sink(index, array)
            result = ShardResult(result.records)
        results[number] = result

    def tasks() -> Iterator[Tuple[Tuple[int, str], ShardTask]]:
        for number in longest_first(shards, utterances):
            indices = shards[number]
            utts = [audio_payload(utterances[i]) for i in indices]
            reference = [reference_log_probs(i) for i in indices] if reference_log_probs is not None else None
            key = cache.key(packed.digest.encode(), settings.encode(),
                            *[u.key.encode() + u.txt.encode() + data for u, _, data in utts],
                            *[a.tobytes() for a in reference or []])
            hit = cache.get(key)
            if hit is not None:
                finished((number, key), hit)
                continue
            yield (number, key), ShardTask(utts, opts, tokens, f"{desc} [{number + 1}/{len(shards)}]", reference,
                                           log_prob_sink is not None)

    engine.run(decode_shard, tasks(), packed, packed.digest, finished)
    return merge([record for number in range(len(shards)) for record in results[number].records])
