"""INT8 sensitivity of the X3 graphs by layer, in CER as well as cosine, and the smallest float set
that keeps CER within a budget.

Groups of nodes by module scope: `bpu.int8_groups`.

Each measurement quantizes a subset of the BPU nodes with the ranges computed once per graph
(`bpu.ranges.calibrate`, through `bpu.compile.calibrate_graph`), streams the development utterances
through the two graphs exactly as eval_quant does, and scores CTC greedy against the references;
CER − PyTorch is against the PyTorch reference of the same utterances and chunking, decoded once by
the dev_reference stage (`evaluate.reference`).
"""

import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from ..bpu.int8_groups import QuantGraph
from ..bpu.quantize import write_qdq
from ..decode import DecodeOptions, ctc_greedy_search, stream_encode
from ..decode.bpu_backend import OnnxBpuBackend
from ..errors import EdgeAsrError
from ..frontend.datalist import Utterance
from ..frontend.dataset import PreparedUtterance, load_utterances
from ..frontend.tokens import detokenize, id_to_token
from ..similarity import PooledCosine
from .cer import score
from .engine import Engine
from .reference import ReferenceSet, read_info, read_reference, reference_symbols
from .shards import audio_payload, prepare_payload

DEV_SET = "dev"  # the set name of the dev reference (stages/dev_reference.py)
STUDY_MODES = ("ctc_greedy",)  # what the study scores

@dataclass(frozen=True)
class DevScore:
    cer: float
    cer_delta: float  # CER - PyTorch's on the same utterances
    cosine_encoder_out: float  # vs the float graphs, pooled over the utterances
    cosine_log_probs: float


@dataclass
class DevScorer:
    """The development utterances decoded by PyTorch and by the float X3 graphs once; then any pair
    of (partly) quantized graphs scored against them."""

    prepared: Sequence[PreparedUtterance]
    chunk_size: int
    num_left_chunks: int
    id_to_token: Mapping[int, str]
    threads: int = 1
    reference_cer: float = field(init=False)
    float_files: Tuple[Path, Path] = field(init=False)
    float_outputs: List[Tuple[np.ndarray, np.ndarray]] = field(init=False)

    def prime(self, reference: ReferenceSet, float_encoder: Path, float_ctc: Path) -> None:
        """reference: PyTorch's hypotheses of these utterances; the float graphs are streamed here."""
        reference.check_utterances([p.utt.key for p in self.prepared])
        reference.check_context("streaming", DecodeOptions(self.chunk_size, self.num_left_chunks, modes=STUDY_MODES))
        self.reference_cer = self._cer([h["streaming"]["ctc_greedy"] for h in reference.hyps])
        self.stream_float_graphs(float_encoder, float_ctc)

    def stream_float_graphs(self, float_encoder: Path, float_ctc: Path) -> None:
        self.float_files = (float_encoder, float_ctc)
        float_graphs = OnnxBpuBackend(float_encoder, float_ctc, "exact", self.threads)
        self.float_outputs = [stream_encode(float_graphs, p.feats, self.chunk_size, self.num_left_chunks)
                              for p in tqdm(self.prepared, desc="dev: float graphs", unit="utt")]

    def shared(self) -> "DevShared":
        """What a worker needs to score graphs exactly as this scorer does: the dev audio, the float
        graphs, the settings and the reference CER (bytes, no paths)."""
        audio = tuple(audio_payload(p.utt) for p in self.prepared)
        graphs = tuple(path.read_bytes() for path in self.float_files)
        digest = hashlib.sha256(b"".join(graphs) + b"".join(a[2] for a in audio) + repr(
            (self.chunk_size, self.num_left_chunks, self.threads, self.reference_cer)).encode()).hexdigest()
        return DevShared(audio, graphs, self.chunk_size, self.num_left_chunks, dict(self.id_to_token), self.threads,
                         self.reference_cer, digest)

    def _hyp(self, log_probs: np.ndarray) -> str:
        return detokenize(ctc_greedy_search(log_probs), self.id_to_token)

    def _cer(self, hyps: Sequence[str]) -> float:
        return score((p.utt.txt, h) for p, h in zip(self.prepared, hyps)).cer

    def score(self, encoder: Path, ctc: Path) -> DevScore:
        backend = OnnxBpuBackend(encoder, ctc, "exact", self.threads)
        pooled = [PooledCosine(), PooledCosine()]
        hyps = []
        for p, ref in zip(self.prepared, self.float_outputs):
            got = stream_encode(backend, p.feats, self.chunk_size, self.num_left_chunks)
            for acc, a, b in zip(pooled, ref, got):
                acc.add(a, b)
            hyps.append(self._hyp(got[1]))
        cer = self._cer(hyps)
        return DevScore(round(cer, 4), round(cer - self.reference_cer, 4) + 0.0,
                        round(pooled[0].value(), 6), round(pooled[1].value(), 6))


@dataclass(frozen=True)
class DevShared:
    """A DevScorer as bytes, for a worker (`score_on_worker`)."""

    audio: Tuple[Tuple[Utterance, str, bytes], ...]
    float_graphs: Tuple[bytes, bytes]  # encoder, ctc
    chunk_size: int
    num_left_chunks: int
    id_to_token: Mapping[int, str]
    threads: int
    reference_cer: float
    digest: str


_SCORERS: Dict[str, DevScorer] = {}  # per worker process: digest -> the primed scorer


def score_on_worker(graphs: Tuple[bytes, bytes], shared: DevShared) -> DevScore:
    """An engine task: the scorer rebuilt once per worker (features and float outputs computed there,
    as the client computes them), then one pair of (partly) quantized graphs scored."""
    if shared.digest not in _SCORERS:
        folder = Path(tempfile.mkdtemp(prefix="edgeasr-dev-"))
        scorer = DevScorer(prepare_payload(shared.audio), shared.chunk_size, shared.num_left_chunks, shared.id_to_token, shared.threads)
        scorer.reference_cer = shared.reference_cer
        files = [folder / "float_encoder.onnx", folder / "float_ctc.onnx"]
        for path, data in zip(files, shared.float_graphs):
            path.write_bytes(data)
        scorer.stream_float_graphs(*files)
        _SCORERS[shared.digest] = scorer
    with tempfile.TemporaryDirectory(prefix="edgeasr-qdq-") as tmp:
        files = [Path(tmp) / "encoder.onnx", Path(tmp) / "ctc.onnx"]
        for path, data in zip(files, graphs):
            path.write_bytes(data)
        return _SCORERS[shared.digest].score(*files)


class SubsetEvaluator:
    """Scores the graphs with every BPU node quantized except those of the groups kept in float."""

    def __init__(self, graphs: Mapping[str, QuantGraph], scorer: DevScorer, scratch: Path):
        self.graphs, self.scorer, self.scratch = graphs, scorer, scratch
        self.evaluations = 0

    def graph_files(self, float_groups: FrozenSet[str], only: FrozenSet[str] = frozenset()) -> Dict[str, Path]:
        """One file per graph: its float original when none of its nodes is quantized, else a QDQ
        model of its BPU nodes minus `float_groups` (or only the nodes of `only`, when given)."""
        files = {}
        for name, graph in self.graphs.items():
            if only:
                nodes = graph.nodes_in(only)
            else:
                kept = set(graph.nodes_in(float_groups))
                nodes = [n for n in graph.bpu_nodes if n not in kept]
            if not nodes:
                files[name] = graph.float_model
                continue
            out = self.scratch / f"{name}.{self.evaluations}.onnx"
            files[name] = write_qdq(graph.float_model, graph.ranges, nodes, graph.per_channel, out)
        return files

    def evaluate(self, float_groups: FrozenSet[str] = frozenset(), only: FrozenSet[str] = frozenset()) -> DevScore:
        files = self.graph_files(float_groups, only)
        result = self.scorer.score(files["encoder"], files["ctc"])
        self.evaluations += 1
        self._remove(files)
        return result

    def evaluate_each_only(self, groups: Sequence[str], engine: Optional[Engine]) -> List[DevScore]:
        """evaluate(only={g}) for every group, spread over the engine's workers (the graphs written
        one window at a time, their bytes shipped, the files removed); serial without an engine."""
        if engine is None or engine.serial:
            return [self.evaluate(only=frozenset([g])) for g in tqdm(groups, desc="sensitivity", unit="group")]
        results: Dict[int, DevScore] = {}
        bar = tqdm(total=len(groups), desc="sensitivity", unit="group")

        def finished(index: int, result: DevScore) -> None:
            results[index] = result
            bar.update()

        def tasks() -> Iterator[Tuple[int, Tuple[bytes, bytes]]]:
            for index, group in enumerate(groups):
                files = self.graph_files(frozenset(), frozenset([group]))
                self.evaluations += 1
                data = (files["encoder"].read_bytes(), files["ctc"].read_bytes())
                self._remove(files)
                yield index, data

        shared = self.scorer.shared()
        engine.run(score_on_worker, tasks(), shared, shared.digest, finished)
        bar.close()
        return [results[i] for i in range(len(groups))]

    def _remove(self, files: Mapping[str, Path]) -> None:
        for name, path in files.items():
            if path != self.graphs[name].float_model:
                path.unlink()


def sensitivity_table(evaluator: SubsetEvaluator, macs: Mapping[str, int], engine: Optional[Engine] = None
                      ) -> List[dict]:
    """One row per group: its nodes and MACs per chunk, and CER − PyTorch and cosine when only that
    group is quantized; most sensitive first (CER − PyTorch, then output cosine). The groups are
    scored on the engine's workers when one is given (each evaluation is independent)."""
    groups = [(graph.name, group, nodes) for graph in evaluator.graphs.values() for group, nodes in graph.groups.items()]
    results = evaluator.evaluate_each_only([group for _, group, _ in groups], engine)
    rows = [{"group": group, "graph": graph, "int8_nodes": len(nodes),
             "macs_per_chunk": int(sum(macs.get(n, 0) for n in nodes)), **result.__dict__}
            for (graph, group, nodes), result in zip(groups, results)]
    return sorted(rows, key=lambda r: (-r["cer_delta"], r["cosine_log_probs"]))


def search_float_set(evaluator: SubsetEvaluator, ranked_groups: Sequence[str], max_cer_delta: float
                     ) -> Dict[str, object]:
    """The smallest set of groups to keep in float so that CER − PyTorch <= max_cer_delta.

    Greedy by measured sensitivity (most sensitive first) until the budget is met, then each
    chosen group but the last is tried back in INT8, least sensitive first, and dropped from the
    set when the budget still holds (groups interact: a later one can make an earlier redundant).
    Every candidate set is evaluated on the dev utterances; the trail lists them."""
    start = time.monotonic()
    chosen: List[str] = []
    trail = []
    result = evaluator.evaluate(frozenset())
    trail.append({"float_groups": [], **result.__dict__})
    for group in ranked_groups:
        if result.cer_delta <= max_cer_delta:
            break
        chosen.append(group)
        result = evaluator.evaluate(frozenset(chosen))
        trail.append({"float_groups": list(chosen), **result.__dict__})
    met = result.cer_delta <= max_cer_delta
    for group in list(reversed(chosen[:-1])) if met else []:
        trial = [g for g in chosen if g != group]
        attempt = evaluator.evaluate(frozenset(trial))
        trail.append({"float_groups": trial, **attempt.__dict__})
        if attempt.cer_delta <= max_cer_delta:
            chosen, result = trial, attempt
    return {"max_cer_delta": max_cer_delta, "met": met, "float_groups": chosen,
            "result": result.__dict__, "evaluations": len(trail), "seconds": round(time.monotonic() - start, 1),
            "trail": trail}


def float_set_cost(graphs: Mapping[str, QuantGraph], float_groups: Sequence[str], macs: Mapping[str, int]
                   ) -> Dict[str, object]:
    """What keeping `float_groups` in float costs: nodes moved from the BPU to the CPU, and their
    share of the BPU's MACs per chunk (the work the CPU takes over, in float)."""
    moved = {name: graph.nodes_in(float_groups) for name, graph in graphs.items()}
    total = sum(macs.get(n, 0) for graph in graphs.values() for n in graph.bpu_nodes)
    moved_macs = sum(macs.get(n, 0) for nodes in moved.values() for n in nodes)
    return {"nodes_moved_to_cpu": {name: len(nodes) for name, nodes in moved.items()},
            "macs_moved_per_chunk": int(moved_macs), "bpu_macs_per_chunk": int(total),
            "share_of_bpu_macs": round(moved_macs / max(total, 1), 4)}


def study_settings(dev_list: Optional[str], sensitivity_utts: int, max_cer_delta: Optional[float],
                   section: str = "bpu") -> Optional[Tuple[Path, int]]:
    """(dev list, utterances) for the study, or None when it is off (no dev list, or
    <section>.sensitivity_utts 0); a budget without development utterances is refused before any work.
    section: the target's params section (bpu: the X3, rknn: the RK3588)."""
    enabled = dev_list is not None and sensitivity_utts > 0
    if max_cer_delta is not None and not enabled:
        raise EdgeAsrError(f"{section}.max_cer_delta={max_cer_delta}: the float-set search needs development utterances "
                           f"(data.dev_list={dev_list}, {section}.sensitivity_utts={sensitivity_utts})")
    return (Path(dev_list), sensitivity_utts) if enabled else None


def dev_scorer(reference_dir: Path, dev_list: Path, max_utts: int, float_encoder: Path, float_ctc: Path,
               threads: int) -> DevScorer:
    """The dev utterances (eval's data policy) with PyTorch's reference hypotheses (dev_reference), and
    the float X3 graphs streamed at their own chunk and left chunks."""
    geometry = OnnxBpuBackend(float_encoder, float_ctc, "exact", threads)  # its chunk and left chunks
    prepared = load_utterances(dev_list, max_utts, int(read_info(reference_dir)["min_frames"])).utterances
    scorer = DevScorer(prepared, geometry.chunk_size, geometry.num_left_chunks,
                       id_to_token(reference_symbols(reference_dir)), threads)
    # NOTE: the dev reference may hold more utterances (the RK3588's study asked for more): the first ones
    scorer.prime(read_reference(reference_dir, DEV_SET).head(len(prepared)), float_encoder, float_ctc)
    return scorer


def int8_study(graphs: Mapping[str, QuantGraph], scorer: DevScorer, macs: Mapping[str, int],
               max_cer_delta: Optional[float], scratch: Path, engine: Optional[Engine] = None) -> Dict[str, object]:
    """The sensitivity table (its groups spread over `engine`), and with a budget the float-set search
    (sequential by nature): its result, cost and the node names per graph to add to hb_mapper's run_on_cpu."""
    start = time.monotonic()
    evaluator = SubsetEvaluator(graphs, scorer, scratch)
    table = sensitivity_table(evaluator, macs, engine)
    study: Dict[str, object] = {"dev_utterances": len(scorer.prepared), "pytorch_cer": round(scorer.reference_cer, 4),
                                "table": table}
    if max_cer_delta is not None:
        search = search_float_set(evaluator, [row["group"] for row in table], max_cer_delta)
        search["cost"] = float_set_cost(graphs, search["float_groups"], macs)
        search["float_nodes"] = {name: graph.nodes_in(search["float_groups"]) for name, graph in graphs.items()}
        study["search"] = search
    study["evaluations"] = evaluator.evaluations
    study["seconds"] = round(time.monotonic() - start, 1)
    return study
