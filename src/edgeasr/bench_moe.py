"""Dense vs sparse MoE in the onnxruntime cpu family, side by side in one run: a table, never an assertion.

    python -m edgeasr.bench_moe [--utts 10] [--seconds 4] [--model-dir models/demo_moe]

Two models: the shipped demo_moe (4 experts, 2 active) and a seed-scale MoE (the x3_110m geometry,
12 x 512 blocks with FFN 2048, every FFN an MoE of 8 experts with 2 active; random weights, so its
routing is arbitrary but its cost is real). Each is exported to cpu/ twice (`export.moe_form` sparse
and dense, export/cpu.py) and streamed at chunk 8 / 16 left chunks at one thread over the same
features (`--utts` synthetic utterances of `--seconds`, which is what timing needs); printed: encoder
+ CTC milliseconds per chunk, real-time factor, the sparse speed-up, and the FFNs' share of the
encoder's kernel time (onnxruntime's profiler, one utterance: nodes under `feed_forward*`), which
bounds the speed-up (with k of n experts: 1 / (1 - share + share * k / n)). Both forms' outputs are
compared too (max |diff|), so a fast graph that computes something else shows.
"""

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnxruntime as ort
import torch
import yaml

from .decode import stream_encode
from .decode.onnx_backend import OnnxCpuBackend
from .export.cpu import export_cpu
from .model import ASRModel, load_model
from .model.checkpoint import build_model
from .model.config import ModelSpec

CHUNK, LEFT = 8, 16
SEED_SCALE = {"output_size": 512, "attention_heads": 8, "linear_units": 2048, "num_blocks": 12,
              "mlp_type": "moe", "n_expert": 8, "n_expert_activated": 2}  # conf/experiment/x3_110m.yaml + MoE


def seed_scale_moe(demo_moe_dir: Path) -> ASRModel:
    """The x3_110m encoder geometry with 8-expert MoE FFNs, on demo_moe's train.yaml (random weights)."""
    configs = copy.deepcopy(yaml.safe_load((demo_moe_dir / "train.yaml").read_text()))
    configs["encoder_conf"].update(SEED_SCALE)
    vocab = sum(1 for line in (demo_moe_dir / "units.txt").read_text(encoding="utf-8").splitlines() if line.strip())
    torch.manual_seed(0)
    return build_model(ModelSpec(configs, vocab), None).eval()


def ffn_share(backend: OnnxCpuBackend, encoder: Path, feats: np.ndarray, out: Path) -> float:
    """The FFN nodes' share of the encoder's kernel time over one utterance (onnxruntime's profiler)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.enable_profiling, opts.profile_file_prefix = True, str(out / "profile")
    timed, backend.encoder = backend.encoder, ort.InferenceSession(str(encoder), opts, providers=["CPUExecutionProvider"])
    stream_encode(backend, feats, CHUNK, LEFT)
    trace = json.loads(Path(backend.encoder.end_profiling()).read_text())
    backend.encoder = timed
    nodes = [e for e in trace if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    return sum(e["dur"] for e in nodes if "/feed_forward" in e["name"]) / sum(e["dur"] for e in nodes)


def time_form(model: ASRModel, form: str, feats: List[np.ndarray], out: Path) -> Tuple[float, float, np.ndarray, float]:
    """(ms per chunk, real-time factor, the first utterance's log-probs, FFN share) of cpu/ exported
    in `form`."""
    paths = export_cpu(model, out / form / "cpu", CHUNK, LEFT, moe=form)
    backend = OnnxCpuBackend(paths["encoder"], paths["ctc"], None)
    stream_encode(backend, feats[0], CHUNK, LEFT)  # warm-up: session allocation, first-run kernels
    start, chunks, first = time.perf_counter(), 0, None
    for x in feats:
        enc, log_probs = stream_encode(backend, x, CHUNK, LEFT)
        chunks += -(-enc.shape[0] // CHUNK)
        first = log_probs if first is None else first
    seconds = time.perf_counter() - start
    audio = sum(x.shape[0] for x in feats) * 0.01
    return 1000.0 * seconds / chunks, seconds / audio, first, ffn_share(backend, paths["encoder"], feats[0], out / form)


def benchmark(models: Dict[str, ASRModel], utts: int, seconds: float) -> List[Dict[str, object]]:
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeasr-bench-moe-") as tmp:
        for name, model in models.items():
            feats = [(rng.standard_normal((int(seconds * 100), model.encoder.input_size)) * 2 + 5).astype(np.float32)
                     for _ in range(utts)]
            timed = {form: time_form(model, form, feats, Path(tmp) / name) for form in ("dense", "sparse")}
            rows.append({"model": name, "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                         "dense_ms": timed["dense"][0], "sparse_ms": timed["sparse"][0],
                         "dense_rtf": timed["dense"][1], "sparse_rtf": timed["sparse"][1],
                         "speedup": timed["dense"][0] / timed["sparse"][0],
                         "dense_ffn_share": timed["dense"][3], "sparse_ffn_share": timed["sparse"][3],
                         "max_diff": float(np.abs(timed["dense"][2] - timed["sparse"][2]).max())})
    return rows


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="ONNX Runtime cpu/ encoder: dense vs sparse MoE.")
    parser.add_argument("--utts", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--model-dir", type=Path, default=Path("models/demo_moe"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    demo_moe, _, _ = load_model(args.model_dir)
    rows = benchmark({"demo_moe": demo_moe, "seed-scale MoE (8 experts, 2 active)": seed_scale_moe(args.model_dir)},
                     args.utts, args.seconds)
    print(f"onnxruntime cpu/ encoder + CTC, chunk {CHUNK}, {LEFT} left chunks, 1 thread, "
          f"{args.utts} x {args.seconds:.0f} s synthetic features")
    print(f"{'model':40} {'params M':>8} {'dense ms/chunk':>15} {'sparse ms/chunk':>16} {'dense RTF':>10} "
          f"{'sparse RTF':>11} {'speed-up':>9} {'FFN share dense/sparse':>23} {'max|diff|':>10}")
    for r in rows:
        shares = f"{100 * r['dense_ffn_share']:.0f} % / {100 * r['sparse_ffn_share']:.0f} %"
        print(f"{r['model']:40} {r['parameters_m']:8.1f} {r['dense_ms']:15.2f} {r['sparse_ms']:16.2f} "
              f"{r['dense_rtf']:10.4f} {r['sparse_rtf']:11.4f} {r['speedup']:8.2f}x {shares:>23} {r['max_diff']:10.2e}")


if __name__ == "__main__":
    main()
