"""Benchmark every backend of a pipeline workspace at one thread: a table, never an assertion.

    python -m edgeasr.bench [WORKSPACE ...] [--utts 30]

For each workspace (a checkout where `dvc repro` has run; default: here) and its model: real-time
factor streaming at the exported chunk for PyTorch eager, ONNX Runtime float (cpu/ export), the X3
float graphs, the emulated INT8 graphs and sherpa-onnx; milliseconds per chunk; model size; and a
physical bound: the encoder + CTC FLOPs per second of audio divided by this machine's measured
one-thread GEMM FLOP/s (the RTF a backend would reach running every MAC at GEMM speed).

RTF here excludes feature extraction (it is the same for all but sherpa-onnx, which runs its own
front end inside its loop and is timed end to end). Searches are CTC greedy.
"""

import argparse
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import onnx
import onnxruntime as ort
import torch
import yaml

from .bpu.compile import quantized_path
from .bpu.placement import node_macs
from .decode import Backend, TorchBackend, ctc_greedy_search, stream_encode
from .decode.bpu_backend import OnnxBpuBackend
from .decode.onnx_backend import OnnxCpuBackend
from .evaluate.sherpa import SherpaRecognizer
from .frontend import read_audio
from .frontend.dataset import load_utterances
from .model import load_model
from .model.subsampling import min_input_frames
from .paths import BPU, COMPILE, EXPORT_CPU, EXPORT_SHERPA


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
    cpu, bpu, compiled = workspace / EXPORT_CPU, workspace / BPU, workspace / COMPILE
    quantized = (quantized_path(compiled, "encoder"), quantized_path(compiled, "ctc"))
    backends: Dict[str, tuple] = {  # name -> (files it needs, constructor)
        "pytorch eager": ((model_dir / "final.pt",), lambda: TorchBackend(model)),
        "onnxruntime float (cpu/)": ((cpu / "encoder.onnx", cpu / "ctc.onnx"),
                                     lambda: OnnxCpuBackend(cpu / "encoder.onnx", cpu / "ctc.onnx", None)),
        "X3 float graphs (onnxruntime)": ((bpu / "encoder.onnx", bpu / "ctc.onnx"),
                                          lambda: OnnxBpuBackend(bpu / "encoder.onnx", bpu / "ctc.onnx")),
        "X3 INT8 emulated (onnxruntime)": (quantized, lambda: OnnxBpuBackend(*quantized)),
    }
    rows = []
    for name, (files, make) in backends.items():
        if not all(f.exists() for f in files):
            rows.append(Row(name, float("nan"), None, 0.0, "not built in this workspace (dvc repro)"))
            continue
        size = size_mb(*files)
        backend = make()
        time_backend(backend, feats[:2], chunk, left)  # warm-up: session arenas, caches
        seconds, chunks = time_backend(backend, feats, chunk, left)
        rows.append(Row(name, seconds / audio, 1000.0 * seconds / max(chunks, 1), size))
    if (workspace / EXPORT_SHERPA / "model.onnx").exists():
        rows.append(time_sherpa(workspace, prepared, chunk, left, audio))
    flops_per_chunk = graph_flops(bpu / "encoder.onnx") + graph_flops(bpu / "ctc.onnx")
    chunk_seconds = chunk * OnnxBpuBackend(bpu / "encoder.onnx", bpu / "ctc.onnx").geometry.subsampling_rate * 0.01
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


def time_sherpa(workspace: Path, prepared, chunk: int, left: int, audio: float) -> Row:
    sherpa_dir = workspace / EXPORT_SHERPA
    recognizer = SherpaRecognizer(sherpa_dir, chunk, left, threads=1, wenet_frontend=True)
    waves = [read_audio(p.utt.wav) for p in prepared]
    recognizer.transcribe(waves[0])
    start = time.perf_counter()
    for wave in waves:
        recognizer.transcribe(wave)
    return Row("sherpa-onnx (C++, own front end)", (time.perf_counter() - start) / audio, None,
               size_mb(sherpa_dir / "model.onnx"), "includes its feature extraction")


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
