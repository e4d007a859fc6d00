"""Position-wise feed-forward and its Mixture-of-Experts variant (WeNet's MoEFFNLayer)."""

from typing import Dict

import torch


class PositionwiseFeedForward(torch.nn.Module):
    """w_2(act(w_1(x))) applied to every frame: (B, T, D) -> (B, T, D)."""

    def __init__(
        self, idim: int, hidden_units: int, dropout_rate: float, activation: torch.nn.Module, bias: bool = True
    ):
        super().__init__()
        self.w_1 = torch.nn.Linear(idim, hidden_units, bias=bias)
        self.activation = activation
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.w_2 = torch.nn.Linear(hidden_units, idim, bias=bias)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(self.activation(self.w_1(xs))))


class MoEFFNLayer(torch.nn.Module):
    """Top-k routed experts: gate (no bias) -> top-k logits -> softmax over the k -> weighted sum.

    `forward` routes tokens like WeNet (indexing in place: exact, but the tracer bakes its shapes);
    `forward_sparse` computes the same k experts per token in ops that trace to a graph valid for
    any number of tokens per expert, none included (NonZero, Gather, ScatterND): what the onnxruntime
    families export; `forward_dense` runs every expert and weights it with a top-k mask (static
    shapes, n_expert / k times the FFN work), what the NPU graphs need. `form` picks one.
    """

    def __init__(
        self,
        idim: int,
        hidden_units: int,
        dropout_rate: float,
        activation: torch.nn.Module,
        bias: bool = True,
        n_expert: int = 8,
        n_expert_activated: int = 2,
    ):
        super().__init__()
        self.gate = torch.nn.Linear(idim, n_expert, bias=False)
        self.experts = torch.nn.ModuleList(
            PositionwiseFeedForward(idim, hidden_units, dropout_rate, activation, bias) for _ in range(n_expert)
        )
        self.n_expert = n_expert
        self.n_expert_activated = n_expert_activated
        self.form = "routed"  # MOE_FORMS; set around an export by export.graphs.moe_form()

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D), each token through its k selected experts only."""
        if self.form == "dense":
            return self.forward_dense(xs)
        if self.form == "sparse":
            return self.forward_sparse(xs)
        b, t, d = xs.size()
        flat = xs.reshape(-1, d)
        logits, selected = torch.topk(self.gate(flat), self.n_expert_activated)  # (N, k)
        weights = torch.softmax(logits, dim=1, dtype=torch.float).to(dtype=xs.dtype)
        out = torch.zeros_like(flat)
        for i, expert in enumerate(self.experts):
            token_ids, slot = torch.where(selected == i)
            out[token_ids] += weights[token_ids, slot, None] * expert(flat[token_ids])
        return out.view(b, t, d)

    def expert_weights(self, xs: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., n_expert): softmax over the top-k gate logits, 0 for the others."""
        router = self.gate(xs)
        kth_best = torch.topk(router, self.n_expert_activated, dim=-1).values[..., -1:]
        selected = router >= kth_best
        masked = router.masked_fill(~selected, -float("inf"))
        return torch.softmax(masked, dim=-1)

    def forward_sparse(self, xs: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D), each token through its k selected experts only, in traceable ops:
        the rows routed to expert i are gathered (NonZero: 0..B*T of them), run, weighted and
        scattered back; no shape is taken from one input."""
        flat = xs.reshape(-1, xs.size(-1))  # (N, D)
        logits, selected = torch.topk(self.gate(flat), self.n_expert_activated)  # (N, k)
        weights = torch.softmax(logits, dim=1, dtype=torch.float).to(dtype=xs.dtype)
        out = torch.zeros_like(flat)
        for i, expert in enumerate(self.experts):
            chosen = selected == i  # (N, k): at most one True per row
            rows = torch.nonzero(chosen.any(dim=1)).squeeze(1)  # (n_i,)
            weight = (weights * chosen).sum(dim=1).index_select(0, rows)  # (n_i,): x + 0 + ... is exact
            update = weight[:, None] * expert(flat.index_select(0, rows))  # (n_i, D)
            out = out + torch.zeros_like(flat).index_put((rows,), update)
        return out.reshape(xs.shape)

    def forward_dense(self, xs: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D) with every expert run: static shapes for ONNX/BPU export."""
        weights = self.expert_weights(xs)
        out = torch.zeros_like(xs)
        for i, expert in enumerate(self.experts):
            out = out + weights[..., i : i + 1] * expert(xs)
        return out


MOE_FORMS = ("routed", "sparse", "dense")  # MoEFFNLayer.form


def moe_layers(model: torch.nn.Module) -> Dict[str, MoEFFNLayer]:
    """Every MoE FFN of `model` by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MoEFFNLayer)}
