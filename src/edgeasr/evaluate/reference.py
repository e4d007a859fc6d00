"""The PyTorch reference, decoded once per configuration and read by every comparison.

eval_torch decodes the test sets (streaming and full context, every mode of `compare.*`) and
dev_reference the development split compile's INT8 study scores on (streaming, CTC greedy). Each
writes a folder every evaluation reads instead of decoding PyTorch again:

    reference.json                   the contexts, the utterance keys per set, min_frames
    units.txt                        the model's token table (artifacts are detokenized with it)
    <set>.jsonl                      per utterance: key, ref, {context: {mode: text}}
    <set>.<context>.log_probs.npz    per utterance (T', V) CTC log-probs, keyed by position ("0", "1", ...)
"""

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np

from ..cli import read_json
from ..decode import Backend, DecodeOptions
from ..errors import EdgeAsrError
from ..frontend import read_symbol_table
from ..frontend.datalist import Utterance, read_data_list
from ..frontend.dataset import PreparedUtterance, load_utterances, scan_utterances
from ..frontend.tokens import id_to_token
from .backends import model_artifact
from .cer import score
from .engine import Engine, ShardCache
from .runner import evaluate_set, reference_metrics
from .shards import NpzWriter, decode_sharded, pack_backend

log = logging.getLogger(__name__)
INFO = "reference.json"
UNITS = "units.txt"


def write_reference(engine: Engine, cache: ShardCache, model_dir: Path, min_frames: int,
                    test_sets: Mapping[str, str], contexts: Mapping[str, DecodeOptions], symbols: Mapping[str, int],
                    max_utts: int, threads: int, out_dir: Path) -> Dict[str, object]:
    """Decode every set in every context with the model of model_dir, sharded over the engine, into
    out_dir (layout above); returns the metrics."""
    tokens = id_to_token(symbols)
    packed = pack_backend(model_artifact(model_dir), model_dir, threads)
    metrics: Dict[str, object] = {}
    sets: Dict[str, dict] = {}
    for name, data_list in test_sets.items():
        scanned = scan_utterances(Path(data_list), max_utts, min_frames, symbols)
        utts = [s.utt for s in scanned.utterances]
        decoded = {}
        for context, opts in contexts.items():
            writer = NpzWriter(out_dir / f"{name}.{context}.log_probs.npz")
            decoded[context] = decode_sharded(engine, cache, packed, utts, opts, tokens, f"{name} {context}",
                                              log_prob_sink=lambda i, a: writer.add(str(i), a))
            writer.close()
            log.info("reference decoded: %s, %s, %d utterances", name, context, len(utts))
        write_hyps(out_dir, name, [{"key": u.key, "ref": u.txt, **{c: d.hyps[i] for c, d in decoded.items()}}
                                   for i, u in enumerate(utts)])
        metrics[name] = reference_metrics([u.txt for u in utts], decoded, contexts)
        metrics[name]["data"] = scanned.report
        sets[name] = {"data_list": str(data_list), "max_utts": max_utts, "keys": [u.key for u in utts]}
    write_info(out_dir, min_frames, contexts, sets, symbols)
    return metrics


def decode_reference_set(backend: Backend, name: str, prepared: List[PreparedUtterance],
                         contexts: Mapping[str, DecodeOptions], tokens: Mapping[int, str], out_dir: Path
                         ) -> Dict[str, object]:
    """One set decoded in this process by `backend` into out_dir; returns its metrics (a test's reference)."""
    metrics, hyps, log_probs = evaluate_set(backend, prepared, contexts, tokens)
    write_hyps(out_dir, name, hyps)
    for context, arrays in log_probs.items():
        np.savez(out_dir / f"{name}.{context}.log_probs.npz", **{str(i): a for i, a in enumerate(arrays)})
    return metrics


def write_hyps(out_dir: Path, name: str, hyps: List[dict]) -> None:
    with open(out_dir / f"{name}.jsonl", "w", encoding="utf-8") as f:
        for h in hyps:
            f.write(json.dumps(h, ensure_ascii=False) + "\n")


def write_info(out_dir: Path, min_frames: int, contexts: Mapping[str, DecodeOptions], sets: Mapping[str, dict],
               symbols: Mapping[str, int]) -> None:
    """reference.json and units.txt: what a reader needs besides the per-set files."""
    info = {"min_frames": min_frames, "contexts": {c: {**asdict(o), "modes": list(o.modes)} for c, o in contexts.items()},
            "sets": dict(sets)}
    (out_dir / INFO).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / UNITS).write_text("".join(f"{token} {index}\n" for token, index in symbols.items()), encoding="utf-8")


@dataclass(frozen=True)
class ReferenceSet:
    """One set of a reference folder: what every artifact of that set is compared with."""

    folder: Path
    name: str
    keys: List[str]
    hyps: List[dict]  # per utterance: key, ref, {context: {mode: text}}
    contexts: Mapping[str, dict]  # context -> the DecodeOptions fields it was decoded with

    def cer(self, context: str, mode: str) -> float:
        """The reference's CER of `mode` in `context`, exactly as its metrics report it."""
        return score((h["ref"], h[context][mode]) for h in self.hyps).as_dict()["cer"]

    def log_probs(self, context: str) -> Callable[[int], np.ndarray]:
        """Utterance index -> its (T', V) CTC log-probs, read on demand."""
        path = self.folder / f"{self.name}.{context}.log_probs.npz"
        try:
            store = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise EdgeAsrError(f"{path}: unreadable reference log-probs ({exc}); rerun `dvc repro eval_torch`") from None
        return lambda index: store[str(index)]

    def check_context(self, context: str, opts: DecodeOptions) -> None:
        """The artifact is decoded with the same chunking and search as the reference, or it is refused."""
        if context not in self.contexts:
            raise EdgeAsrError(f"{self.folder / INFO}: no {context!r} context in the reference "
                               f"(has: {', '.join(self.contexts)})")
        decoded = self.contexts[context]
        asked = {**asdict(opts), "modes": list(opts.modes)}
        differ = [k for k in asked if k != "modes" and asked[k] != decoded[k]]
        missing = set(opts.modes) - set(decoded["modes"])
        if differ or missing:
            what = ", ".join([f"{k}={asked[k]} (reference: {decoded[k]})" for k in differ] +
                             [f"modes {sorted(missing)} not decoded"])
            raise EdgeAsrError(f"{self.folder / INFO}: {context}: {what}; rerun `dvc repro`")

    def head(self, count: int) -> "ReferenceSet":
        """The first `count` utterances of the set (0: all of them), e.g. a study's share of the dev
        reference two targets decode once."""
        if count < 0:
            raise ValueError(f"head({count})")
        keep = len(self.keys) if count == 0 else count
        return ReferenceSet(self.folder, self.name, self.keys[:keep], self.hyps[:keep], self.contexts)

    def check_utterances(self, keys: Sequence[str]) -> None:
        keys = list(keys)
        if keys != self.keys:
            raise EdgeAsrError(f"{self.folder / INFO}: set {self.name}: the reference was decoded on other utterances "
                               f"({len(self.keys)} vs {len(keys)}, first difference at "
                               f"{next((i for i, (a, b) in enumerate(zip(keys, self.keys)) if a != b), min(len(keys), len(self.keys)))})")


def reference_symbols(folder: Path) -> Dict[str, int]:
    """The token table the reference was decoded with."""
    return read_symbol_table(folder / UNITS)


def read_info(folder: Path) -> dict:
    path = folder / INFO
    info = read_json(path, "reference", folder)
    try:
        info["min_frames"], info["sets"], info["contexts"]  # noqa: B018 - the keys a reader needs
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeAsrError(f"{path}: not a valid reference ({type(exc).__name__}: {exc})") from None
    return info


def read_reference(folder: Path, name: str) -> ReferenceSet:
    info = read_info(folder)
    if name not in info["sets"]:
        raise EdgeAsrError(f"{folder / INFO}: no set {name!r} (has: {', '.join(info['sets'])})")
    path = folder / f"{name}.jsonl"
    try:
        hyps = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise EdgeAsrError(f"{path}: unreadable reference hypotheses ({exc})") from None
    keys = list(info["sets"][name]["keys"])
    if [h.get("key") for h in hyps] != keys:
        raise EdgeAsrError(f"{path}: hypotheses do not match {folder / INFO} (a damaged reference)")
    return ReferenceSet(folder, name, keys, hyps, info["contexts"])


def reference_utterances(folder: Path, name: str, data_list: str, max_utts: int) -> List[Utterance]:
    """The utterances of `data_list` the reference decoded for set `name`, in its order: the list's
    lines matched to the reference's keys, no audio read (the reference applied the data policy
    once; what it skipped is not among its keys)."""
    reference = read_reference(folder, name)
    keys = reference.keys
    listed = read_data_list(Path(data_list))
    listed = listed[:max_utts] if max_utts > 0 else listed
    picked: List[Utterance] = []
    for utt in listed:
        if len(picked) < len(keys) and utt.key == keys[len(picked)]:
            picked.append(utt)
    reference.check_utterances([u.key for u in picked])
    return picked


def load_reference_utterances(folder: Path, name: str, data_list: str, max_utts: int) -> List[PreparedUtterance]:
    """The utterances of set `name` with features, exactly those the reference decoded."""
    info = read_info(folder)
    prepared = load_utterances(Path(data_list), max_utts, int(info["min_frames"])).utterances
    read_reference(folder, name).check_utterances([p.utt.key for p in prepared])
    return prepared
