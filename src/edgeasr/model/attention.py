"""Multi-head attention with WeNet's KV-cache layout.

Cache: (1, h, T_cache, 2 * d_k), keys in the first d_k channels, values in the last d_k. A layer
returns the cache for [cache + this chunk]; the encoder trims it to `required_cache_size`.
"""

import math
from typing import Optional, Tuple

import torch

_EMPTY_MASK = torch.ones((0, 0, 0), dtype=torch.bool)
_EMPTY_CACHE = torch.zeros((0, 0, 0, 0))


class MultiHeadedAttention(torch.nn.Module):
    """selfattn: softmax(q k^T / sqrt(d_k)) v, with h heads of d_k = d / h."""

    def __init__(
        self,
        n_head: int,
        n_feat: int,
        dropout_rate: float,
        query_bias: bool = True,
        key_bias: bool = True,
        value_bias: bool = True,
    ):
        super().__init__()
        assert n_feat % n_head == 0, f"attention dim {n_feat} is not divisible by {n_head} heads"
        self.d_k = n_feat // n_head
        self.h = n_head
        self.linear_q = torch.nn.Linear(n_feat, n_feat, bias=query_bias)
        self.linear_k = torch.nn.Linear(n_feat, n_feat, bias=key_bias)
        self.linear_v = torch.nn.Linear(n_feat, n_feat, bias=value_bias)
        self.linear_out = torch.nn.Linear(n_feat, n_feat)
        self.dropout = torch.nn.Dropout(p=dropout_rate)

    def forward_qkv(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, d) each -> q (B, h, T1, d_k), k and v (B, h, T2, d_k)."""
        n_batch = query.size(0)
        q = self.linear_q(query).view(n_batch, -1, self.h, self.d_k).transpose(1, 2)
        k = self.linear_k(key).view(n_batch, -1, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(value).view(n_batch, -1, self.h, self.d_k).transpose(1, 2)
        return q, k, v

    @staticmethod
    def update_cache(
        k: torch.Tensor, v: torch.Tensor, cache: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prepend cached keys/values; return k, v (B, h, T_cache + T, d_k) and the new cache."""
        if cache.size(0) > 0:
            key_cache, value_cache = torch.split(cache, cache.size(-1) // 2, dim=-1)
            k = torch.cat([key_cache, k], dim=2)
            v = torch.cat([value_cache, v], dim=2)
        return k, v, torch.cat((k, v), dim=-1)

    def forward_attention(self, value: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """scores (B, h, T1, T2), mask (B, 1 or T1, T2) -> (B, T1, d)."""
        n_batch = value.size(0)
        if mask.size(2) > 0:
            masked = mask.unsqueeze(1).eq(0)[:, :, :, : scores.size(-1)]
            scores = scores.masked_fill(masked, -float("inf"))
            attn = torch.softmax(scores, dim=-1).masked_fill(masked, 0.0)
        else:
            attn = torch.softmax(scores, dim=-1)
        x = torch.matmul(self.dropout(attn), value)
        x = x.transpose(1, 2).contiguous().view(n_batch, -1, self.h * self.d_k)
        return self.linear_out(x)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor = _EMPTY_MASK,
        pos_emb: Optional[torch.Tensor] = None,
        cache: torch.Tensor = _EMPTY_CACHE,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> output (B, T1, d), new cache (1, h, T_cache + T1, 2 * d_k)."""
        q, k, v = self.forward_qkv(query, key, value)
        k, v, new_cache = self.update_cache(k, v, cache)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        return self.forward_attention(v, scores, mask), new_cache


class RelPositionMultiHeadedAttention(MultiHeadedAttention):
    """rel_selfattn (Transformer-XL style biases u, v) without rel_shift, as WeNet does.

    score_ij = ((q_i + u) . k_j + (q_i + v) . W_pos p_j) / sqrt(d_k), where p_j is the positional
    encoding of key j's absolute position (see embedding.py for the offset convention).
    """

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float, **bias_flags: bool):
        super().__init__(n_head, n_feat, dropout_rate, **bias_flags)
        self.linear_pos = torch.nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = torch.nn.Parameter(torch.empty(self.h, self.d_k))
        self.pos_bias_v = torch.nn.Parameter(torch.empty(self.h, self.d_k))
        torch.nn.init.xavier_uniform_(self.pos_bias_u)
        torch.nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor = _EMPTY_MASK,
        pos_emb: Optional[torch.Tensor] = None,
        cache: torch.Tensor = _EMPTY_CACHE,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """pos_emb (1, T_cache + T1, d) covers every key position."""
        assert pos_emb is not None, "rel_selfattn needs pos_emb"
        q, k, v = self.forward_qkv(query, key, value)
        k, v, new_cache = self.update_cache(k, v, cache)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k).transpose(1, 2)
        q = q.transpose(1, 2)  # (B, T1, h, d_k)
        q_with_bias_u = (q + self.pos_bias_u).transpose(1, 2)
        q_with_bias_v = (q + self.pos_bias_v).transpose(1, 2)
        matrix_ac = torch.matmul(q_with_bias_u, k.transpose(-2, -1))
        matrix_bd = torch.matmul(q_with_bias_v, p.transpose(-2, -1))
        scores = (matrix_ac + matrix_bd) / math.sqrt(self.d_k)
        return self.forward_attention(v, scores, mask), new_cache


ATTENTION_CLASSES = {
    "selfattn": MultiHeadedAttention,
    "rel_selfattn": RelPositionMultiHeadedAttention,
}
