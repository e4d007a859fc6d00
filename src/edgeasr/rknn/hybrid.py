"""The RK3588's INT8 budget met by the real toolchain: the fewest layer groups in float16 (rknn-toolkit2's
hybrid quantization) that keep the simulator's CER − PyTorch on the dev split within `rknn.max_cer_delta`.

    dvc exp run -S npu=rk3588 -S rknn.max_cer_delta=0.3      # compile_rknn searches, eval_rknn scores it

The same search as the X3's (`evaluate.sensitivity.search_float_set`: most sensitive group first
until the budget holds, then each chosen group but the last tried back in INT8), with real builds:

1. `hybrid_quantization_step1` once lists the tensors the toolkit quantizes (its quantization cfg);
   each INT8 tensor belongs to the layer group of its ONNX scope (`bpu.int8_groups.node_group`).
2. The groups are ranked cheaply by the toolkit's accuracy analysis of the all-INT8 build (the lowest
   per-layer `single` cosine of each group: that layer quantized alone, on float inputs).
3. Each candidate set is a real build: step 1, its groups' tensors set to float16 in
   custom_quantize_layers, step 2, in the simulator, which streams the dev utterances (the first
   `rknn.sensitivity_utts` of dev_reference) on the compute engine's workers, CTC greedy, scored
   against PyTorch's hypotheses of the same utterances; the cosine is to the float graph.

What the search chose is what compile_rknn writes (a step-2 build, exported) and what eval_rknn's
simulator rebuilds (the manifest carries the float16 tensors).
"""

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Sequence, Tuple

from ..artifact.manifest import Artifact
from ..bpu.int8_groups import node_group
from ..decode import DecodeOptions
from ..errors import EdgeAsrError
from ..evaluate.backends import Opener
from ..evaluate.cer import score
from ..evaluate.engine import Engine, ShardCache
from ..evaluate.reference import ReferenceSet
from ..evaluate.runner import COSINE_TENSORS
from ..evaluate.sensitivity import STUDY_MODES, DevScore, search_float_set
from ..evaluate.shards import decode_sharded, pack_backend
from ..frontend.datalist import Utterance
from .export import GRAPH
from .toolkit import run_worker


def quantized_tensors(python: Path, config: Mapping[str, Any], graph: Path, dataset: Path, out: Path) -> List[str]:
    """The INT8 layer outputs of the graph as the toolkit's step-1 cfg lists them: what
    custom_quantize_layers takes (the weights and constants it also lists go with their layer)."""
    listing = out / f"{GRAPH}.tensors.json"
    job = {"config": dict(config), "models": {GRAPH: {"onnx": str(graph.resolve()), "dataset": str(dataset.resolve()),
                                                       "tensors": str(listing.resolve())}}}
    run_worker(python, "tensors", job, out / f"{GRAPH}.tensors.job.json", out / f"{GRAPH}.tensors.log")
    listed = json.loads(listing.read_text(encoding="utf-8"))
    found = [row["tensor"] for row in listed if row["dtype"] == "int8" and row["layer_output"]]
    if not found:
        raise EdgeAsrError(f"{listing}: the toolkit's quantization cfg lists no INT8 tensor of the graph")
    return found


def tensor_groups(tensors: Sequence[str]) -> Dict[str, List[str]]:
    """layer group -> its INT8 tensors, in the cfg's order."""
    groups: Dict[str, List[str]] = {}
    for tensor in tensors:
        groups.setdefault(node_group(GRAPH, tensor), []).append(tensor)
    return groups


def ranked_table(groups: Mapping[str, Sequence[str]], accuracy: Sequence[Mapping[str, Any]]) -> List[dict]:
    """One row per group, most damaged first: its INT8 tensors and the lowest single / entire cosine
    the all-INT8 build's accuracy analysis measured in it (groups it printed nothing for come last)."""
    rows = []
    for group, tensors in groups.items():
        analysed = [r for r in accuracy if r["group"] == group]
        worst = min(analysed, key=lambda r: float(r["single_cos"])) if analysed else None
        rows.append({"group": group, "int8_tensors": len(tensors),
                     "min_single_cos": float(worst["single_cos"]) if worst else None,
                     "min_entire_cos": min(float(r["entire_cos"]) for r in analysed) if analysed else None,
                     "worst_tensor": worst["tensor"] if worst else None})
    return sorted(rows, key=lambda r: (r["min_single_cos"] is None, r["min_single_cos"] or 0.0, r["group"]))


class HybridEvaluator:
    """CER − PyTorch of the compiled graph with a set of groups in float16: a candidate artifact (the
    compiled entry with those groups' tensors, without its .rknn file: the simulator rebuilds from
    the graph, the dataset list and the settings) decoded on the dev utterances over the engine."""

    def __init__(self, candidate: Callable[[Mapping[str, Sequence[str]]], Artifact], folder: Path,
                 groups: Mapping[str, Sequence[str]], reference: ReferenceSet, utterances: Sequence[Utterance],
                 opts: DecodeOptions, tokens: Mapping[int, str], engine: Engine, cache: ShardCache, opener: Opener):
        """candidate: {group: tensors} -> the manifest entry built with them (rknn.compile.rknn_artifacts)."""
        self.candidate, self.folder, self.groups = candidate, folder, groups
        self.reference, self.utterances, self.opts, self.tokens = reference, utterances, opts, tokens
        self.engine, self.cache, self.opener = engine, cache, opener
        self.reference_cer = reference.cer("streaming", STUDY_MODES[0])
        self.evaluations = 0

    def float16(self, float_groups: Iterable[str]) -> Dict[str, List[str]]:
        """{group: its INT8 tensors} of the chosen groups, in name order."""
        unknown = sorted(set(float_groups) - set(self.groups))
        if unknown:
            raise EdgeAsrError(f"no INT8 tensors in layer group {unknown[0]!r} (groups: {', '.join(self.groups)})")
        return {group: list(self.groups[group]) for group in sorted(float_groups)}

    def evaluate(self, float_groups: FrozenSet[str] = frozenset()) -> DevScore:
        artifact = self.candidate(self.float16(float_groups))
        artifact = replace(artifact, files={role: f for role, f in artifact.files.items() if role != GRAPH})
        packed = pack_backend(artifact, self.folder, 1, self.opener)
        label = "+".join(sorted(float_groups)) or "all INT8"
        decoded = decode_sharded(self.engine, self.cache, packed, self.utterances, self.opts, self.tokens,
                                 f"rk3588 dev [{label}]")
        self.evaluations += 1
        mode = STUDY_MODES[0]
        cer = score((r["ref"], h[mode]) for r, h in zip(self.reference.hyps, decoded.hyps)).cer
        cosines = [round(decoded.cosine[name].value(), 6) for name in COSINE_TENSORS]
        return DevScore(round(cer, 4), round(cer - self.reference_cer, 4) + 0.0, *cosines)


def study_dev(reference: ReferenceSet, utterances: Sequence[Utterance], count: int, chunk_size: int,
              left_chunks: int) -> Tuple[ReferenceSet, List[Utterance], DecodeOptions]:
    """The first `count` utterances of the dev reference (0: all) with the utterances they are, and
    the decoding options, checked against the reference's streaming context."""
    head = reference.head(count)
    picked = list(utterances)[:len(head.keys)]
    head.check_utterances([u.key for u in picked])
    opts = DecodeOptions(chunk_size, left_chunks, modes=STUDY_MODES)
    head.check_context("streaming", opts)
    return head, picked, opts


def budget_study(evaluator: HybridEvaluator, accuracy: Sequence[Mapping[str, Any]], max_cer_delta: float
                 ) -> Tuple[Dict[str, Any], Dict[str, List[str]]]:
    """The ranked table and the search -> (the study for the metrics, {group: tensors} chosen)."""
    start = time.monotonic()
    table = ranked_table(evaluator.groups, accuracy)
    search = search_float_set(evaluator, [row["group"] for row in table], max_cer_delta)
    chosen = evaluator.float16(search["float_groups"])
    search["float16_tensors"] = sum(len(tensors) for tensors in chosen.values())
    study = {"dev_utterances": len(evaluator.utterances), "pytorch_cer": round(evaluator.reference_cer, 4),
             "ranked_by": "the all-INT8 build's accuracy analysis: lowest single-layer cosine per group",
             "table": table, "search": search,
             # NOTE: each evaluation is a simulator build per worker that decodes a shard of it
             "evaluations": evaluator.evaluations, "seconds": round(time.monotonic() - start, 1)}
    return study, chosen
