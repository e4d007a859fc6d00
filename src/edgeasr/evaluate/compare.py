"""Score an artifact family against the PyTorch model, utterance by utterance.

Each artifact evaluation decodes the PyTorch model itself, with the same `compare.*` settings and
utterances as the artifact (a `Reference`), so it does not depend on eval_torch's settings: changing
how the baseline is reported (`eval.*`) reruns eval_torch only. For each family: CER per mode, CER
minus PyTorch's, the share of hypotheses identical to PyTorch's, the largest |difference| of CTC
log-probabilities (finite entries), real-time factor.
"""

import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ..decode import Backend, DecodeOptions, recognize
from ..frontend import read_audio
from ..frontend.dataset import PreparedUtterance
from ..similarity import max_abs_diff
from .cer import score
from ..frontend.tokens import detokenize
from .runner import chunk_latency, evaluate_set


@dataclass(frozen=True)
class Reference:
    """The PyTorch model decoded over the same utterances and contexts as the artifacts."""

    metrics: Mapping[str, dict]  # {context: {mode: scores, rtf, ...}}, the layout of metrics/torch.json
    hyps: Mapping[str, dict]  # {key: {ref, context: {mode: text}}}
    log_probs: Mapping[str, List[np.ndarray]]  # {context: per-utterance (T', V) CTC log-probs}


def decode_reference(
    model: Backend,
    prepared: Sequence[PreparedUtterance],
    contexts: Mapping[str, DecodeOptions],
    id_to_token: Mapping[int, str],
) -> Reference:
    metrics, hyps, log_probs = evaluate_set(model, list(prepared), contexts, id_to_token)
    return Reference({c: metrics[c] for c in contexts}, {h["key"]: h for h in hyps}, log_probs)


def summarize(
    hyps: Sequence[Mapping[str, str]],
    prepared: Sequence[PreparedUtterance],
    reference: Reference,
    context: str,
    modes: Sequence[str],
) -> Dict[str, dict]:
    out = {}
    for mode in modes:
        cer = score((p.utt.txt, h[mode]) for p, h in zip(prepared, hyps)).cer
        same = [h[mode] == reference.hyps[p.utt.key][context][mode] for p, h in zip(prepared, hyps)]
        out[mode] = {
            "cer": round(cer, 4),
            "cer_delta": round(cer - reference.metrics[context][mode]["cer"], 4) + 0.0,  # no -0.0
            "identical": round(float(np.mean(same)), 4),
        }
    return out


def evaluate_family(
    backend: Backend,
    prepared: Sequence[PreparedUtterance],
    opts: DecodeOptions,
    context: str,
    id_to_token: Mapping[int, str],
    reference: Reference,
    name: str,
    frames_align: bool = True,
) -> Dict[str, object]:
    """frames_align: the family's CTC frames match PyTorch's one to one, so log-probs are compared."""
    hyps, worst, decode_time = [], 0.0, 0.0
    for index, p in enumerate(tqdm(prepared, desc=name, unit="utt")):
        start = time.perf_counter()
        rec = recognize(backend, p.feats, opts)
        decode_time += time.perf_counter() - start
        if frames_align:
            worst = max(worst, max_abs_diff(reference.log_probs[context][index], rec.log_probs))
        hyps.append({mode: detokenize(ids, id_to_token) for mode, ids in rec.hyps.items()})
    audio = sum(p.seconds for p in prepared)
    result: Dict[str, object] = summarize(hyps, prepared, reference, context, opts.modes)
    result["context"] = context
    if frames_align:
        result["max_abs_log_prob_diff"] = float(f"{worst:.3g}")
    result["rtf"] = round((sum(p.feature_seconds for p in prepared) + decode_time) / max(audio, 1e-9), 5)
    if opts.chunk_size > 0:
        result.update(chunk_latency(backend, prepared, opts.chunk_size, decode_time))
    return result


def evaluate_audio_recognizer(
    transcribe: Callable[[np.ndarray], str],
    prepared: Sequence[PreparedUtterance],
    reference: Reference,
    name: str,
) -> Dict[str, object]:
    """A recognizer with its own front end (sherpa-onnx): scored as streaming ctc_greedy."""
    hyps, elapsed = [], 0.0
    for p in tqdm(prepared, desc=name, unit="utt"):
        start = time.perf_counter()
        text = transcribe(read_audio(p.utt.wav))
        elapsed += time.perf_counter() - start
        hyps.append({"ctc_greedy": text})
    result: Dict[str, object] = summarize(hyps, prepared, reference, "streaming", ["ctc_greedy"])
    result["context"] = "streaming"
    result["rtf"] = round(elapsed / max(sum(p.seconds for p in prepared), 1e-9), 5)
    return result
