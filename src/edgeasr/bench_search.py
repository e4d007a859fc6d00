"""Where one artifact's evaluation spends its time, phase by phase: a table, never an assertion.

    python -m edgeasr.bench_search [WORKSPACE] [--utts 100] [--artifact cpu]

For the test set's first `--utts` utterances, at one thread, what `evaluate` does per utterance for
an artifact of the export manifest (default: `cpu`, WeNet's runtime graphs), each phase timed on its
own: reading audio + fbank, the streaming encoder + CTC at the exported chunk (the network), the
three searches (CTC greedy, CTC prefix beam, and attention rescoring: decoder.onnx on the beam plus
its scoring arithmetic). RTF per phase and each search's cost as a share of the network's, the
quantity issue #28 bounds (search ≤ a quarter of the network).
"""

import argparse
import os
import platform
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Dict, List, Optional

import onnxruntime as ort
import torch
import yaml

from .artifact.manifest import read_manifest
from .decode import ctc_greedy_search, ctc_prefix_beam_search, stream_encode
from .evaluate.backends import open_backend
from .frontend.dataset import load_utterances
from .model import load_model
from .model.subsampling import min_input_frames
from .paths import EXPORT


def _timed(phase: Dict[str, float], name: str, fn: Callable, *args):
    start = time.perf_counter()
    out = fn(*args)
    phase[name] = phase.get(name, 0.0) + time.perf_counter() - start
    return out


def profile(workspace: Path, utts: int, artifact_name: str) -> Dict[str, object]:
    """Seconds per phase over `utts` test utterances of `workspace`, and the audio they hold."""
    torch.set_num_threads(1)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    chunk, left = params["streaming"]["chunk_size"], params["streaming"]["num_decoding_left_chunks"]
    beam_size = params["compare"]["beam_size"]
    ctc_weight, reverse_weight = params["compare"]["ctc_weight"], params["compare"]["reverse_weight"]
    test_list = workspace / next(iter(params["data"]["test_sets"].values()))
    model, _, _ = load_model(workspace / params["model"]["dir"])
    prepared = load_utterances(test_list, utts, min_input_frames(model.encoder.embed.right_context)).utterances
    manifest = read_manifest(workspace / EXPORT)
    phase: Dict[str, float] = {"fbank (with reading audio)": sum(p.feature_seconds for p in prepared)}
    with ExitStack() as stack:
        backend = open_backend(manifest.artifacts[artifact_name], manifest.folder, 1, stack)
        stream_encode(backend, prepared[0].feats, chunk, left)  # warm-up: session arenas, the compiled search
        ctc_prefix_beam_search(stream_encode(backend, prepared[0].feats, chunk, left)[1], beam_size)
        for p in prepared:
            enc, log_probs = _timed(phase, "encoder + CTC (streaming)", stream_encode, backend, p.feats, chunk, left)
            _timed(phase, "CTC greedy search", ctc_greedy_search, log_probs)
            beam = _timed(phase, "CTC prefix beam search", ctc_prefix_beam_search, log_probs, beam_size)
            _timed(phase, "attention rescoring (decoder + scoring)", backend.pick_rescored, enc, beam,
                   ctc_weight, reverse_weight)
    return {"workspace": str(workspace), "model": params["model"]["name"], "artifact": artifact_name,
            "chunk": chunk, "beam": beam_size, "utterances": len(prepared),
            "audio_s": sum(p.seconds for p in prepared), "phase_s": phase}


def table(result: Dict[str, object]) -> str:
    audio, phase = result["audio_s"], result["phase_s"]
    network = phase["encoder + CTC (streaming)"]
    head = (f"{result['model']}, artifact {result['artifact']}, chunk {result['chunk']}, beam {result['beam']}: "
            f"{result['utterances']} utterances ({audio:.1f} s of audio), one thread\n")
    lines = ["| phase | seconds | RTF | × encoder + CTC |", "|---|---|---|---|"]
    for name, seconds in phase.items():
        lines.append(f"| {name} | {seconds:.3f} | {seconds / audio:.5f} | {seconds / network:.3f} |")
    searches = phase["CTC greedy search"] + phase["CTC prefix beam search"]
    lines.append(f"| CTC searches together (greedy + prefix beam) | {searches:.3f} | {searches / audio:.5f} | "
                 f"{searches / network:.3f} |")
    return head + "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Time per decoding phase of one artifact, one thread.")
    parser.add_argument("workspace", nargs="?", type=Path, default=Path("."))
    parser.add_argument("--utts", type=int, default=100, help="test utterances")
    parser.add_argument("--artifact", default="cpu", help="an artifact of the export manifest")
    args = parser.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {time.strftime('%Y-%m-%d')}\n")
    print(table(profile(args.workspace, args.utts, args.artifact)))


if __name__ == "__main__":
    main()
