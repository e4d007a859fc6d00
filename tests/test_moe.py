"""MoE: WeNet's routed form against an independent dense formulation, including starved experts."""

import torch

from edgeasr.model.ffn import MoEFFNLayer


def reference_moe(layer: MoEFFNLayer, xs: torch.Tensor) -> torch.Tensor:
    """Per token, written from the definition: softmax over the k largest gate logits, weighted experts."""
    out = torch.zeros_like(xs)
    layer = layer.requires_grad_(False)
    for b in range(xs.size(0)):
        for t in range(xs.size(1)):
            x = xs[b, t]
            logits = layer.gate(x)
            top = sorted(range(layer.n_expert), key=lambda e: -float(logits[e]))[: layer.n_expert_activated]
            w = torch.softmax(torch.stack([logits[e] for e in top]), 0)
            out[b, t] = sum(w[i] * layer.experts[e](x.unsqueeze(0))[0] for i, e in enumerate(top))
    return out


def make_layer(seed: int = 0) -> MoEFFNLayer:
    torch.manual_seed(seed)
    return MoEFFNLayer(8, 12, 0.0, torch.nn.ReLU(), True, n_expert=4, n_expert_activated=2).eval()


def test_routed_and_dense_match_the_definition():
    layer = make_layer()
    xs = torch.randn(2, 9, 8)
    ref = reference_moe(layer, xs)
    with torch.no_grad():
        assert (layer(xs) - ref).abs().max() < 1e-5
        assert (layer.forward_dense(xs) - ref).abs().max() < 1e-5


def _inputs_routing(layer: MoEFFNLayer, counts_wanted) -> torch.Tensor:
    """Search random inputs until some expert gets exactly `counts_wanted` tokens (0 or 1)."""
    g = torch.Generator().manual_seed(1)
    for _ in range(2000):
        xs = torch.randn(1, 3, 8, generator=g)
        selected = torch.topk(layer.gate(xs.view(-1, 8)), layer.n_expert_activated).indices
        counts = torch.bincount(selected.flatten(), minlength=layer.n_expert)
        if counts_wanted in counts.tolist():
            return xs
    raise AssertionError("no routing found")


def test_expert_with_zero_and_one_token():
    layer = make_layer(3)
    with torch.no_grad():
        for wanted in (0, 1):
            xs = _inputs_routing(layer, wanted)
            assert (layer(xs) - reference_moe(layer, xs)).abs().max() < 1e-5
            assert (layer.forward_dense(xs) - reference_moe(layer, xs)).abs().max() < 1e-5


def test_single_token_and_top1():
    torch.manual_seed(5)
    layer = MoEFFNLayer(8, 12, 0.0, torch.nn.ReLU(), True, n_expert=3, n_expert_activated=1).eval()
    xs = torch.randn(1, 1, 8)
    with torch.no_grad():
        assert (layer(xs) - reference_moe(layer, xs)).abs().max() < 1e-5
        assert (layer.forward_dense(xs) - layer(xs)).abs().max() < 1e-5


def test_routing_diagnostic_tells_copied_experts_from_specialised_ones():
    """moe_routing: distance 0 and no effect of random routing for copies of one expert; both large
    for independent experts; the gate's top-k counted per expert; the hooks gone afterwards."""
    from edgeasr.evaluate.moe_routing import expert_distance, gate_load, random_routing

    independent, copies = make_layer(0), make_layer(1)
    for expert in copies.experts[1:]:
        expert.load_state_dict(copies.experts[0].state_dict())
    xs = torch.randn(2, 9, 8, generator=torch.Generator().manual_seed(2))
    assert expert_distance(independent) > 1.0 and expert_distance(copies) == 0.0
    with torch.no_grad():
        routed = {"independent": independent(xs), "copies": copies(xs)}
        with gate_load({"independent": independent}) as counts:
            independent(xs)
        with random_routing({"independent": independent, "copies": copies}):
            drawn = {"independent": independent(xs), "copies": copies(xs)}
        assert (drawn["copies"] - routed["copies"]).abs().max() < 1e-6
        assert (drawn["independent"] - routed["independent"]).abs().max() > 1e-2
        assert torch.equal(independent(xs), routed["independent"])  # hooks removed
        top = torch.topk(independent.gate(xs.reshape(-1, 8)), 2).indices.flatten()
    assert counts["independent"].tolist() == torch.bincount(top, minlength=4).tolist()
