"""CER of a checkpoint by chunk size: how much look-ahead the model needs (a table, no pipeline).

    python -m edgeasr.evaluate.by_chunk models/demo data/demo/test/data.list \
        [--chunks 2,4,8,16,32,-1] [--left -1] [--max-utts 150] [--positions]

The PyTorch model streams each utterance chunk by chunk with its caches (WeNet's
forward_chunk_by_chunk; -1 = full context), CTC greedy. Prints, per chunk size, the audio one chunk
covers, CER with substitutions / deletions / insertions per 100 reference characters, the
emission delay against full context, and the real-time factor at one thread (feature extraction
included, as in the eval stages). The streaming gap of the demo model (docs/training.md) is measured
with it; `dvc exp run --queue` sweeps every artifact, this looks at one checkpoint in a minute.

Emission delay (`delay ms`, needs -1 among the chunks): the median over tokens of when CTC greedy
emits a token streaming minus when it emits it at full context, on the utterances whose greedy
token sequences are the same in both. A model whose full-context CTC is aligned with the audio
shows a delay of about a chunk or less; one that learned to emit ahead of the audio at full context
(docs/training.md, the U2++ demo) shows delays of several hundred ms, and its streaming errors are
the words it has to guess instead.

Positions (`--positions`): for each streamed chunk size, the tokens CTC greedy emits at each encoder
frame inside a chunk (0 = its first) over all utterances, and the share of them that are
substitutions or insertions against the reference (jiwer's alignment of the token ids, as the CER),
and how many of the wrong ones an utterance's first chunk emitted (`1st chunk`); with -1 among the
chunks, beside it the full-context decode counted at the same positions (frame index modulo the
chunk). A position wrong far more often streamed than at full context is where the chunking costs,
not the audio.
"""

import argparse
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

import jiwer
import numpy as np
import torch

from ..cli import run_stage
from ..decode import Backend, DecodeOptions, TorchBackend
from ..frontend.dataset import PreparedUtterance, load_utterances
from ..frontend.fbank import FRAME_SHIFT_MS
from ..frontend.tokens import id_to_token, tokenize
from ..model import load_model
from ..model.subsampling import min_input_frames
from .emission import greedy_emissions, median_delay_ms
from .runner import evaluate_set

GREEDY = ("ctc_greedy",)
ALIGNMENT_LABELS = {"equal": "correct", "substitute": "substitution", "insert": "insertion"}  # jiwer's types
LABELS = tuple(ALIGNMENT_LABELS.values())


def context_name(chunk: int) -> str:
    return f"chunk {chunk}" if chunk > 0 else "full"


def decode_by_chunk(backend: Backend, prepared: Sequence[PreparedUtterance], chunks: Sequence[int],
                    num_left_chunks: int, tokens: Mapping[int, str]) -> Tuple[dict, dict]:
    """Every utterance decoded at each chunk size (-1 = full context) by the eval stages'
    evaluate_set -> (metrics by context name, per-utterance (T', V) CTC log-probs by context name)."""
    contexts = {context_name(chunk): DecodeOptions(chunk, num_left_chunks if chunk > 0 else -1, modes=GREEDY)
                for chunk in chunks}
    result, _, log_probs = evaluate_set(backend, list(prepared), contexts, tokens)
    return result, log_probs


def chunk_rows(result: dict, log_probs: dict, chunks: Sequence[int], frame_ms: float) -> List[dict]:
    """One row per chunk size (-1 = full context) from `decode_by_chunk`: chunk, chunk_ms, cer, sub /
    del / ins per 100 reference tokens, delay_ms (median emission delay against full context), rtf."""
    rows = []
    for chunk in chunks:
        context = result[context_name(chunk)]
        counts = context[GREEDY[0]]
        per_100 = 100.0 / max(counts["reference_tokens"], 1)
        rows.append({
            "chunk": chunk if chunk > 0 else "full",
            "chunk_ms": context.get("chunk_audio_ms"),
            "cer": round(counts["cer"], 2),
            "sub": round(counts["substitutions"] * per_100, 1),
            "del": round(counts["deletions"] * per_100, 1),
            "ins": round(counts["insertions"] * per_100, 1),
            "delay_ms": median_delay_ms(log_probs[context_name(chunk)], log_probs.get("full"), frame_ms),
            "rtf": round(context["rtf"], 4),
        })
    return rows


def hypothesis_labels(reference: Sequence[int], hypothesis: Sequence[int]) -> List[str]:
    """Per hypothesis token: correct, substitution or insertion, by jiwer's alignment (as the CER)."""
    if not reference:
        return ["insertion"] * len(hypothesis)
    if not hypothesis:
        return []
    alignment = jiwer.process_words(" ".join(map(str, reference)), " ".join(map(str, hypothesis))).alignments[0]
    labels = [""] * len(hypothesis)
    for piece in alignment:
        if piece.type in ALIGNMENT_LABELS:
            labels[piece.hyp_start_idx:piece.hyp_end_idx] = [ALIGNMENT_LABELS[piece.type]] * (
                piece.hyp_end_idx - piece.hyp_start_idx)
    return labels


def errors_by_position(log_probs: Sequence[np.ndarray], references: Sequence[Sequence[int]],
                       chunk: int) -> List[dict]:
    """Where in a chunk streamed CTC greedy goes wrong: per encoder-frame position 0..chunk-1 inside
    the chunk, the tokens emitted there over all utterances (each at the first frame of its run,
    as `greedy_emissions`) and how many of them are substitutions or insertions against the
    reference token ids, and how many of those wrong ones are in an utterance's first chunk.
    log_probs: per utterance (T', V), streamed at `chunk`."""
    counts = {label: [0] * chunk for label in LABELS}
    wrong_in_first_chunk = [0] * chunk
    for utterance_log_probs, reference in zip(log_probs, references):
        emitted = greedy_emissions(utterance_log_probs)
        for (_, frame), label in zip(emitted, hypothesis_labels(reference, [t for t, _ in emitted])):
            counts[label][frame % chunk] += 1
            wrong_in_first_chunk[frame % chunk] += int(label != "correct" and frame < chunk)
    rows = []
    for position in range(chunk):
        emitted = sum(counts[label][position] for label in LABELS)
        wrong = counts["substitution"][position] + counts["insertion"][position]
        rows.append({"position": position, "emitted": emitted, "substitutions": counts["substitution"][position],
                     "insertions": counts["insertion"][position], "wrong_in_first_chunk": wrong_in_first_chunk[position],
                     "error_pct": round(100.0 * wrong / emitted, 1) if emitted else None})
    return rows


def format_positions(streamed: Sequence[dict], full: Optional[Sequence[dict]], frame_ms: float) -> str:
    """The position table of a streamed chunk size, beside the full-context decode's counted at the
    same frame positions (frame index modulo the chunk) where there is one."""
    header = f"{'frame':>6} {'ms in':>6} {'emitted':>8} {'sub':>5} {'ins':>5} {'wrong %':>8} {'1st chunk':>10}"
    lines = [header + ("   full: emitted  wrong %" if full else "")]
    for i, r in enumerate(streamed):
        line = (f"{r['position']:>6} {r['position'] * frame_ms:>6.0f} {r['emitted']:>8} {r['substitutions']:>5} "
                f"{r['insertions']:>5} {_pct(r['error_pct']):>8} {r['wrong_in_first_chunk']:>10}")
        lines.append(line + (f" {full[i]['emitted']:>15} {_pct(full[i]['error_pct']):>8}" if full else ""))
    wrong = sum(r["substitutions"] + r["insertions"] for r in streamed)
    lines.append(f"wrong tokens: {wrong}, of them in an utterance's first chunk: "
                 f"{sum(r['wrong_in_first_chunk'] for r in streamed)}")
    return "\n".join(lines)


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(rows: Sequence[dict]) -> str:
    header = (f"{'chunk':>6} {'audio ms':>9} {'CER %':>7} {'sub':>6} {'del':>6} {'ins':>6} "
              f"{'delay ms':>9} {'RTF':>7}")
    lines = [header] + [
        f"{r['chunk']:>6} {r['chunk_ms'] if r['chunk_ms'] is not None else '-':>9} {r['cer']:>7.2f} "
        f"{r['sub']:>6.1f} {r['del']:>6.1f} {r['ins']:>6.1f} "
        f"{r['delay_ms'] if r['delay_ms'] is not None else '-':>9} {r['rtf']:>7.4f}" for r in rows]
    return "\n".join(lines)


def main(argv: list) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("data_list", type=Path)
    parser.add_argument("--chunks", default="2,4,8,16,32,-1", help="encoder frames per chunk; -1 = full context")
    parser.add_argument("--left", type=int, default=-1, help="left chunks of history; -1 = unlimited")
    parser.add_argument("--max-utts", type=int, default=150, help="first N utterances of the list; 0 = all")
    parser.add_argument("--positions", action="store_true",
                        help="per streamed chunk size, errors by the frame inside the chunk a token is emitted at")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, _, symbols = load_model(args.model_dir)
    backend = TorchBackend(model)
    prepared = load_utterances(args.data_list, args.max_utts, min_input_frames(backend.geometry.right_context),
                               symbols).utterances
    chunks = [int(c) for c in args.chunks.split(",")]
    print(f"{args.model_dir} on {len(prepared)} utterances of {args.data_list}, CTC greedy, left chunks {args.left}")
    result, log_probs = decode_by_chunk(backend, prepared, chunks, args.left, id_to_token(symbols))
    frame_ms = backend.geometry.subsampling_rate * FRAME_SHIFT_MS
    print(format_table(chunk_rows(result, log_probs, chunks, frame_ms)))
    if not args.positions:
        return
    references = [tokenize(p.utt.txt, symbols) for p in prepared]
    for chunk in (c for c in chunks if c > 0):
        print(f"\nchunk {chunk}: tokens emitted at each frame of a chunk, and how many are wrong")
        full = errors_by_position(log_probs["full"], references, chunk) if "full" in log_probs else None
        print(format_positions(errors_by_position(log_probs[context_name(chunk)], references, chunk), full, frame_ms))


if __name__ == "__main__":
    run_stage(main)
