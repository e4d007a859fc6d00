"""Score an artifact family against the PyTorch baseline, utterance by utterance.

For each family: CER per mode, CER minus the baseline's, the share of hypotheses identical to the
baseline's, the largest |difference| of CTC log-probabilities (finite entries), real-time factor.
"""

import json
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..decode import Backend, DecodeOptions, recognize
from ..export.parity import max_abs_diff
from ..frontend import read_audio
from .cer import score
from .runner import PreparedUtterance, chunk_latency, detokenize


def read_hyps(path: Path) -> Dict[str, dict]:
    """exp/eval_torch/<set>.jsonl -> {key: {ref, streaming: {mode: text}, full: {...}}}."""
    return {h["key"]: h for h in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def reference_log_probs(reference: Backend, prepared: Sequence[PreparedUtterance], opts: DecodeOptions) -> List[np.ndarray]:
    return [recognize(reference, p.feats, DecodeOptions(opts.chunk_size, opts.num_left_chunks, modes=())).log_probs
            for p in prepared]


def summarize(
    hyps: Sequence[Mapping[str, str]],
    prepared: Sequence[PreparedUtterance],
    baseline_hyps: Mapping[str, dict],
    baseline_metrics: Mapping[str, dict],
    context: str,
    modes: Sequence[str],
) -> Dict[str, dict]:
    out = {}
    for mode in modes:
        cer = score((p.utt.txt, h[mode]) for p, h in zip(prepared, hyps)).cer
        same = [h[mode] == baseline_hyps[p.utt.key][context][mode] for p, h in zip(prepared, hyps)]
        out[mode] = {
            "cer": round(cer, 4),
            "cer_delta": round(cer - baseline_metrics[context][mode]["cer"], 4) + 0.0,  # no -0.0
            "identical": round(float(np.mean(same)), 4),
        }
    return out


def evaluate_family(
    backend: Backend,
    prepared: Sequence[PreparedUtterance],
    opts: DecodeOptions,
    context: str,
    id_to_token: Mapping[int, str],
    reference: Optional[List[np.ndarray]],
    baseline_hyps: Mapping[str, dict],
    baseline_metrics: Mapping[str, dict],
    name: str,
) -> Dict[str, object]:
    """`reference`: the baseline's CTC log-probs per utterance, or None where frames do not align."""
    hyps, worst, decode_time = [], 0.0, 0.0
    for index, p in enumerate(tqdm(prepared, desc=name, unit="utt")):
        start = time.perf_counter()
        rec = recognize(backend, p.feats, opts)
        decode_time += time.perf_counter() - start
        if reference is not None:
            worst = max(worst, max_abs_diff(reference[index], rec.log_probs))
        hyps.append({mode: detokenize(ids, id_to_token) for mode, ids in rec.hyps.items()})
    audio = sum(p.seconds for p in prepared)
    result: Dict[str, object] = summarize(hyps, prepared, baseline_hyps, baseline_metrics, context, opts.modes)
    result["context"] = context
    if reference is not None:
        result["max_abs_log_prob_diff"] = float(f"{worst:.3g}")
    result["rtf"] = round((sum(p.feature_seconds for p in prepared) + decode_time) / max(audio, 1e-9), 5)
    if opts.chunk_size > 0:
        result.update(chunk_latency(backend, prepared, opts.chunk_size, decode_time))
    return result



def evaluate_audio_recognizer(
    transcribe: Callable[[np.ndarray], str],
    prepared: Sequence[PreparedUtterance],
    baseline_hyps: Mapping[str, dict],
    baseline_metrics: Mapping[str, dict],
    name: str,
) -> Dict[str, object]:
    """A recognizer with its own front end (sherpa-onnx): scored as streaming ctc_greedy."""
    hyps, elapsed = [], 0.0
    for p in tqdm(prepared, desc=name, unit="utt"):
        start = time.perf_counter()
        text = transcribe(read_audio(p.utt.wav))
        elapsed += time.perf_counter() - start
        hyps.append({"ctc_greedy": text})
    result: Dict[str, object] = summarize(hyps, prepared, baseline_hyps, baseline_metrics, "streaming", ["ctc_greedy"])
    result["context"] = "streaming"
    result["rtf"] = round(elapsed / max(sum(p.seconds for p in prepared), 1e-9), 5)
    return result
