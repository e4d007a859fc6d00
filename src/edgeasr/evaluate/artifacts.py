"""Score every artifact of a manifest against the PyTorch reference: the one evaluation every
artifact stage (eval_onnx, eval_bpu, eval_quant, eval_rknn) runs.

Per artifact and test set: CER per mode, CER minus the reference's, the share of hypotheses
identical to the reference's, the largest |difference| of CTC log-probs where frames align, the
pooled cosine to the float graphs where the manifest names them, real-time factor and chunk latency
(or the simulator's time, which is not a chip's). Hypotheses of every artifact are written as JSON
lines, `<hyps_dir>/<set>/<artifact>.jsonl`, beside the reference's, for a user to diff. Decoding is
sharded over the compute engine (`evaluate.engine`, `evaluate.shards`); the merged result is the
serial one.
"""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..artifact.manifest import Artifact, Manifest
from ..decode import DecodeOptions
from ..frontend.dataset import PreparedUtterance
from ..frontend.tokens import id_to_token
from .backends import Opener, Runnable
from .cer import score
from .contexts import decode_contexts
from .engine import Engine, ShardCache
from .reference import ReferenceSet, read_reference, reference_symbols, reference_utterances
from .runner import Decoded, decode_utterances
from .shards import PackedBackend, decode_sharded, pack_backend


def summarize(hyps: Sequence[Mapping[str, str]], reference: ReferenceSet, context: str,
              modes: Sequence[str]) -> Dict[str, dict]:
    """CER, CER − reference and the identical share of each mode."""
    out = {}
    for mode in modes:
        cer = score((r["ref"], h[mode]) for r, h in zip(reference.hyps, hyps)).cer
        same = [h[mode] == r[context][mode] for r, h in zip(reference.hyps, hyps)]
        out[mode] = {
            "cer": round(cer, 4),
            "cer_delta": round(cer - reference.cer(context, mode), 4) + 0.0,  # no -0.0
            "identical": round(float(np.mean(same)), 4),
        }
    return out


def artifact_options(artifact: Artifact, contexts: Mapping[str, DecodeOptions]) -> DecodeOptions:
    """The reference's decoding options of the artifact's context, narrowed to the modes it supports."""
    opts = contexts[artifact.context]
    return replace(opts, modes=tuple(m for m in opts.modes if m in artifact.modes))


def artifact_result(artifact: Artifact, decoded: Decoded, reference: ReferenceSet, opts: Optional[DecodeOptions]
                    ) -> Dict[str, object]:
    """An artifact's metrics from its merged records (opts None: an audio recognizer, streaming greedy)."""
    modes = opts.modes if opts is not None else ("ctc_greedy",)
    result: Dict[str, object] = summarize(decoded.hyps, reference, artifact.context, modes)
    result["context"] = artifact.context
    if decoded.max_log_prob_diff is not None:
        result["max_abs_log_prob_diff"] = float(f"{decoded.max_log_prob_diff:.3g}")
    result["rtf"] = decoded.rtf
    if opts is not None and opts.chunk_size > 0:
        result.update(decoded.chunk_latency(opts.chunk_size))
    for tensor, pooled in decoded.cosine.items():
        result[f"cosine_{tensor}"] = round(pooled.value(), 6)
    if artifact.options.get("speed") == "simulator":
        # NOTE: an x86 emulation's speed says nothing about the chip's: never reported as an RTF.
        result["simulator_time"] = {"seconds_per_audio_second": result.pop("rtf"),
                                    "ms_per_chunk": result.pop("chunk_compute_ms")}
    return result


def score_backend(artifact: Artifact, backend: Runnable, prepared: Sequence[PreparedUtterance], opts: DecodeOptions,
                  tokens: Mapping[int, str], reference: ReferenceSet, name: str,
                  float_backend: Optional[Runnable] = None) -> Tuple[Dict[str, object], List[Dict[str, str]]]:
    """A backend of this process decoded like the reference over prepared utterances -> (metrics, hypotheses)."""
    reference.check_context(artifact.context, opts)
    log_probs = reference.log_probs(artifact.context) if artifact.frames_align else None
    decoded = decode_utterances(backend, prepared, opts, tokens, name, reference_log_probs=log_probs,
                                float_backend=float_backend)
    return artifact_result(artifact, decoded, reference, opts), decoded.hyps


def write_hyps(path: Path, reference: ReferenceSet, context: str, hyps: Sequence[Mapping[str, str]]) -> None:
    """One line per utterance: key, reference text, this artifact's and PyTorch's hypothesis per mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r, h in zip(reference.hyps, hyps):
            line = {"key": r["key"], "ref": r["ref"], "hyp": dict(h), "pytorch": {m: r[context][m] for m in h}}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def targets(manifest: Manifest, threads: int, openers: Mapping[str, Opener]) -> Iterator[Tuple[str, PackedBackend]]:
    """Each runnable artifact packed for the engine, one at a time (at the 110M preset each is ~400 MB
    of bytes); those of `openers` (backends of a higher layer: the RK3588 simulator) carry their
    opener, so each worker opens them itself."""
    for name, artifact in manifest.artifacts.items():
        if artifact.runnable:
            yield name, pack_backend(artifact, manifest.folder, threads, openers.get(artifact.backend))


def evaluate_manifest(manifest: Manifest, reference_dir: Path, test_sets: Mapping[str, str], search: Any,
                      streaming: Any, hyps_dir: Path, engine: Engine, cache: ShardCache,
                      openers: Optional[Mapping[str, Opener]] = None) -> Dict[str, object]:
    """Every runnable artifact of `manifest` on every test set, against the reference in reference_dir,
    sharded over `engine`. search: the `compare` params section (modes, beam, weights, max_utts, threads).
    Returns {"produced_by": {...}, [not_evaluated,] <set>: {<artifact>: metrics}}."""
    tokens = id_to_token(reference_symbols(reference_dir))
    contexts = decode_contexts(search, streaming)
    metrics: Dict[str, object] = {"produced_by": {name: a.produced_by for name, a in manifest.artifacts.items()}}
    not_runnable = {name: a.reason for name, a in manifest.artifacts.items() if not a.runnable}
    if not_runnable:
        metrics["not_evaluated"] = not_runnable
    sets = {name: (reference_utterances(reference_dir, name, data_list, search.max_utts),
                   read_reference(reference_dir, name)) for name, data_list in test_sets.items()}
    for set_name in sets:
        metrics[set_name] = {}
    # NOTE: artifact by artifact, every set of one before the next: one artifact's bytes in memory
    # and on the workers at a time, sent once for all sets.
    for name, packed in targets(manifest, search.threads, openers or {}):
        artifact = manifest.artifacts[name]
        opts = None if artifact.backend == "sherpa_onnx" else artifact_options(artifact, contexts)
        for set_name, (utterances, reference) in sets.items():
            if opts is not None:
                reference.check_context(artifact.context, opts)
            log_probs = reference.log_probs(artifact.context) if artifact.frames_align and opts else None
            decoded = decode_sharded(engine, cache, packed, utterances, opts, tokens, name, log_probs)
            metrics[set_name][name] = artifact_result(artifact, decoded, reference, opts)
            write_hyps(hyps_dir / set_name / f"{name}.jsonl", reference, artifact.context, decoded.hyps)
    return metrics
