"""How much an MoE checkpoint's routing matters (a table, no pipeline).

    python -m edgeasr.evaluate.moe_routing models/demo_moe data/demo/test/data.list \
        [--chunk 8] [--left 16] [--max-utts 100]

Per MoE layer: how far apart its experts are (mean over expert pairs of the distance between their
weights, relative to their size: 0 = identical copies, ~1.4 = unrelated random draws) and the share
of the top-k slots the gate gives each expert on the utterances. Then CTC greedy CER with the
gate's routing and with each token's experts drawn at random (same k, softmax over random logits).

An MoE model upcycled from a dense one (`demo.trainer.upcycled_state`) starts with every distance
at 0, and random routing costs it nothing; the cost grows as its experts specialise. A model whose
random-routing CER equals its routed CER computes a dense FFN in MoE form.
"""

import argparse
import contextlib
import itertools
from pathlib import Path
from typing import Dict, Iterator, Sequence

import numpy as np
import torch

from ..cli import run_stage
from ..decode import TorchBackend
from ..frontend.dataset import load_utterances
from ..frontend.tokens import id_to_token
from ..model import load_model
from ..model.ffn import MoEFFNLayer, moe_layers
from ..model.subsampling import min_input_frames
from .by_chunk import chunk_rows


def expert_distance(layer: MoEFFNLayer) -> float:
    """Mean over expert pairs of ||θ_i − θ_j|| / mean(||θ_i||, ||θ_j||), θ = an expert's weights."""
    flat = [torch.cat([p.detach().flatten() for p in e.parameters()]) for e in layer.experts]
    pairs = [float((a - b).norm() / ((a.norm() + b.norm()) / 2)) for a, b in itertools.combinations(flat, 2)]
    return float(np.mean(pairs))


@contextlib.contextmanager
def gate_load(layers: Dict[str, MoEFFNLayer]) -> Iterator[Dict[str, np.ndarray]]:
    """Counts, while open, how often each expert of each layer is among a token's top k."""
    counts = {name: np.zeros(layer.n_expert) for name, layer in layers.items()}

    def hook(name: str, layer: MoEFFNLayer):
        def count(_module, _inputs, logits):
            top = torch.topk(logits.reshape(-1, layer.n_expert), layer.n_expert_activated).indices
            counts[name] += np.bincount(top.flatten().numpy(), minlength=layer.n_expert)
        return count

    handles = [layer.gate.register_forward_hook(hook(name, layer)) for name, layer in layers.items()]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def random_routing(layers: Dict[str, MoEFFNLayer], seed: int = 0) -> Iterator[None]:
    """While open, every gate returns random logits: each token's k experts drawn at random."""
    generator = torch.Generator().manual_seed(seed)

    def draw(_module, _inputs, logits):
        return torch.randn(logits.shape, generator=generator, dtype=logits.dtype)

    handles = [layer.gate.register_forward_hook(draw) for layer in layers.values()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def format_layers(layers: Dict[str, MoEFFNLayer], counts: Dict[str, np.ndarray]) -> str:
    lines = [f"{'MoE layer':44} {'distance':>8}  share of top-k slots per expert"]
    for name, layer in layers.items():
        share = counts[name] / max(counts[name].sum(), 1)
        lines.append(f"{name:44} {expert_distance(layer):8.3f}  " + " ".join(f"{s:.2f}" for s in share))
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("data_list", type=Path)
    parser.add_argument("--chunk", type=int, default=8, help="encoder frames per chunk; -1 = full context")
    parser.add_argument("--left", type=int, default=16, help="left chunks of history; -1 = unlimited")
    parser.add_argument("--max-utts", type=int, default=100, help="first N utterances of the list; 0 = all")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, _, symbols = load_model(args.model_dir)
    layers = moe_layers(model)
    if not layers:
        print(f"{args.model_dir}: no MoE layer")
        return
    backend = TorchBackend(model)
    prepared = load_utterances(args.data_list, args.max_utts, min_input_frames(backend.geometry.right_context),
                               symbols).utterances
    tokens = id_to_token(symbols)
    with gate_load(layers) as counts:
        routed = chunk_rows(backend, prepared, [args.chunk], args.left, tokens)
    with random_routing(layers):
        drawn = chunk_rows(backend, prepared, [args.chunk], args.left, tokens)
    print(f"{args.model_dir} on {len(prepared)} utterances of {args.data_list}, chunk {args.chunk}, "
          f"left chunks {args.left}, CTC greedy")
    print(format_layers(layers, counts))
    print(f"CER with the gate's routing {routed[0]['cer']:.2f} %, with each token's experts drawn at random "
          f"{drawn[0]['cer']:.2f} %")


if __name__ == "__main__":
    run_stage(main)
