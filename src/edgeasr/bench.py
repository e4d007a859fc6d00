"""Benchmark every backend of a pipeline workspace at one thread: a table, never an assertion.

    python -m edgeasr.bench [WORKSPACE ...] [--utts 30]

For each workspace (a checkout where `dvc repro` has run; default: here) and its model: real-time
factor streaming at the exported chunk for PyTorch eager and the artifacts the stages' manifests list
(ONNX Runtime float: the cpu/ export, the X3 float graphs, the quantized X3 graphs, sherpa-onnx); milliseconds per chunk; model size; and a
physical bound: the encoder + CTC FLOPs per second of audio divided by this machine's measured
one-thread GEMM FLOP/s (the RTF a backend would reach running every MAC at GEMM speed).

RTF here excludes feature extraction (it is the same for all but sherpa-onnx, which runs its own
front end inside its loop and is timed end to end). Searches are CTC greedy.
"""

import argparse
import os
import platform
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import torch
import yaml

from .artifact.manifest import Artifact, Manifest, read_manifest
from .bpu.export import x3_graphs
from .bpu.placement import node_macs
from .decode import Backend, TorchBackend, ctc_greedy_search, stream_encode
from .decode.bpu_backend import OnnxBpuBackend
from .errors import EdgeAsrError
from .evaluate.backends import open_backend
from .evaluate.sherpa import SherpaRecognizer
from .frontend import read_audio
from .frontend.dataset import load_utterances
from .model import load_model
from .model.subsampling import min_input_frames
from .paths import BPU, COMPILE, EXPORT


@dataclass
class Row:
    backend: str
    rtf: float
    chunk_ms: Optional[float]
    size_mb: float
    note: str = ""


def gemm_flops_per_second(n: int = 512, repeats: int = 20) -> float:
    """Best one-thread float32 GEMM rate of this machine (2 n^3 FLOPs per product)."""
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def graph_flops(path: Path) -> float:
    """FLOPs of one run of a static-shape graph: 2 x MACs of its Conv and MatMul nodes."""
    return 2.0 * sum(node_macs(onnx.load(str(path))).values())


def time_backend(backend: Backend, feats: List[np.ndarray], chunk: int, left: int) -> tuple:
    """(seconds, chunks) to stream every utterance and run CTC greedy search."""
    chunks, start = 0, time.perf_counter()
    for f in feats:
        _, log_probs = stream_encode(backend, f, chunk, left)
        ctc_greedy_search(log_probs)
        chunks += int(np.ceil(log_probs.shape[0] / chunk))
    return time.perf_counter() - start, chunks


def size_mb(*paths: Path) -> float:
    return round(sum(p.stat().st_size for p in paths if p.exists()) / 1e6, 2)


# (artifact folder, manifest entry, row label): the artifacts timed beside PyTorch
TIMED = ((EXPORT, "cpu", "onnxruntime float (cpu/)"), (BPU, "bpu_float", "X3 float graphs (onnxruntime)"),
         (COMPILE, "quantized", "X3 INT8 {mode} (onnxruntime)"))


def manifest_entry(folder: Path, name: str) -> Optional[Tuple[Manifest, Artifact]]:
    """The manifest and its entry `name`, or None where the stage has not run in this workspace."""
    try:
        manifest = read_manifest(folder)
    except EdgeAsrError:
        return None
    return (manifest, manifest.artifacts[name]) if name in manifest.artifacts else None


def benchmark(workspace: Path, utts: int) -> Dict[str, object]:
    torch.set_num_threads(1)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    chunk, left = params["streaming"]["chunk_size"], params["streaming"]["num_decoding_left_chunks"]
    test_list = workspace / next(iter(params["data"]["test_sets"].values()))
    model_dir = workspace / params["model"]["dir"]
    model, _, _ = load_model(model_dir)
    prepared = load_utterances(test_list, utts, min_input_frames(model.encoder.embed.right_context)).utterances
    feats = [p.feats for p in prepared]
    audio = sum(p.seconds for p in prepared)
    rows = [time_row("pytorch eager", TorchBackend(model), feats, chunk, left, audio, size_mb(model_dir / "final.pt"))]
    with ExitStack() as stack:
        for folder, name, label in TIMED:
            found = manifest_entry(workspace / folder, name)
            if found is None:
                rows.append(Row(label.format(mode=""), float("nan"), None, 0.0, "not built in this workspace (dvc repro)"))
                continue
            manifest, artifact = found
            backend = open_backend(artifact, manifest.folder, 1, stack)
            files = [artifact.path(manifest.folder, role) for role in artifact.files if role != "decoder"]
            rows.append(time_row(label.format(mode=manifest.info.get("mode", "")), backend, feats, chunk, left, audio,
                                 size_mb(*files)))
        sherpa = manifest_entry(workspace / EXPORT, "sherpa")
        if sherpa is not None:
            manifest, artifact = sherpa
            rows.append(time_sherpa(open_backend(artifact, manifest.folder, 1, stack), prepared, audio,
                                    size_mb(artifact.path(manifest.folder, "model"))))
    graphs = x3_graphs(workspace / BPU)
    flops_per_chunk = sum(graph_flops(path) for path in graphs.values())
    chunk_seconds = chunk * OnnxBpuBackend(graphs["encoder"], graphs["ctc"]).geometry.subsampling_rate * 0.01
    gemm = gemm_flops_per_second()
    return {
        "workspace": str(workspace), "model": params["model"]["name"], "chunk": chunk, "left": left,
        "utterances": len(prepared), "audio_s": round(audio, 1),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "gflops_per_audio_s": round(flops_per_chunk / chunk_seconds / 1e9, 3),
        "gemm_gflops": round(gemm / 1e9, 1),
        "rtf_bound": flops_per_chunk / chunk_seconds / gemm,
        "rows": rows,
    }


def time_row(label: str, backend: Backend, feats: List[np.ndarray], chunk: int, left: int, audio: float,
             size: float) -> Row:
    time_backend(backend, feats[:2], chunk, left)  # warm-up: session arenas, caches
    seconds, chunks = time_backend(backend, feats, chunk, left)
    return Row(label, seconds / audio, 1000.0 * seconds / max(chunks, 1), size)


def time_sherpa(recognizer: SherpaRecognizer, prepared, audio: float, size: float) -> Row:
    waves = [read_audio(p.utt.wav) for p in prepared]
    recognizer.transcribe(waves[0])
    start = time.perf_counter()
    for wave in waves:
        recognizer.transcribe(wave)
    return Row("sherpa-onnx (C++, own front end)", (time.perf_counter() - start) / audio, None, size,
               "includes its feature extraction")


def table(result: Dict[str, object]) -> str:
    head = (f"{result['model']}: {result['parameters_m']} M parameters, chunk {result['chunk']}, left "
            f"{result['left']}, {result['utterances']} utterances ({result['audio_s']} s), one thread\n"
            f"physical bound: {result['gflops_per_audio_s']} GFLOP per second of audio / "
            f"{result['gemm_gflops']} GFLOP/s GEMM = RTF {result['rtf_bound']:.5f}\n")
    lines = ["| backend | RTF | ms per chunk | × bound | size MB | note |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        chunk_ms = f"{row.chunk_ms:.2f}" if row.chunk_ms is not None else "—"
        lines.append(f"| {row.backend} | {row.rtf:.5f} | {chunk_ms} | {row.rtf / result['rtf_bound']:.1f} | "
                     f"{row.size_mb} | {row.note} |")
    return head + "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="RTF of every backend at one thread, one table per workspace.")
    parser.add_argument("workspaces", nargs="*", type=Path, default=[Path(".")])
    parser.add_argument("--utts", type=int, default=30, help="test utterances per workspace")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, one thread per backend, "
          f"torch {torch.__version__}, onnxruntime {ort.__version__}, {time.strftime('%Y-%m-%d')}\n")
    for workspace in args.workspaces:
        print(table(benchmark(workspace, args.utts)))


if __name__ == "__main__":
    main()
