"""CER of a checkpoint by chunk size: how much look-ahead the model needs (a table, no pipeline).

    python -m edgeasr.evaluate.by_chunk models/demo data/demo/test/data.list \
        [--chunks 2,4,8,16,32,-1] [--left -1] [--max-utts 150]

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
"""

import argparse
from pathlib import Path
from typing import List, Mapping, Sequence

import torch

from ..cli import run_stage
from ..decode import Backend, DecodeOptions, TorchBackend
from ..frontend.dataset import PreparedUtterance, load_utterances
from ..frontend.fbank import FRAME_SHIFT_MS
from ..frontend.tokens import id_to_token
from ..model import load_model
from ..model.subsampling import min_input_frames
from .emission import median_delay_ms
from .runner import evaluate_set

GREEDY = ("ctc_greedy",)


def chunk_rows(backend: Backend, prepared: Sequence[PreparedUtterance], chunks: Sequence[int],
               num_left_chunks: int, tokens: Mapping[int, str]) -> List[dict]:
    """One row per chunk size (-1 = full context): chunk, chunk_ms, cer, sub / del / ins per 100
    reference tokens, delay_ms (median emission delay against full context), rtf; decoded and
    scored by the eval stages' evaluate_set."""
    names = {chunk: f"chunk {chunk}" if chunk > 0 else "full" for chunk in chunks}
    contexts = {names[chunk]: DecodeOptions(chunk, num_left_chunks if chunk > 0 else -1, modes=GREEDY)
                for chunk in chunks}
    result, _, log_probs = evaluate_set(backend, list(prepared), contexts, tokens)
    frame_ms = backend.geometry.subsampling_rate * FRAME_SHIFT_MS
    rows = []
    for chunk in chunks:
        context = result[names[chunk]]
        counts = context[GREEDY[0]]
        per_100 = 100.0 / max(counts["reference_tokens"], 1)
        rows.append({
            "chunk": chunk if chunk > 0 else "full",
            "chunk_ms": context.get("chunk_audio_ms"),
            "cer": round(counts["cer"], 2),
            "sub": round(counts["substitutions"] * per_100, 1),
            "del": round(counts["deletions"] * per_100, 1),
            "ins": round(counts["insertions"] * per_100, 1),
            "delay_ms": median_delay_ms(log_probs[names[chunk]], log_probs.get("full"), frame_ms),
            "rtf": round(context["rtf"], 4),
        })
    return rows


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
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, _, symbols = load_model(args.model_dir)
    backend = TorchBackend(model)
    prepared = load_utterances(args.data_list, args.max_utts, min_input_frames(backend.geometry.right_context),
                               symbols).utterances
    chunks = [int(c) for c in args.chunks.split(",")]
    print(f"{args.model_dir} on {len(prepared)} utterances of {args.data_list}, CTC greedy, left chunks {args.left}")
    print(format_table(chunk_rows(backend, prepared, chunks, args.left, id_to_token(symbols))))


if __name__ == "__main__":
    run_stage(main)
