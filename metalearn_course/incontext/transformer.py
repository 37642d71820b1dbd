"""A small decoder-style transformer, written out: the sequence learner of in-context learning.

Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser & Polosukhin 2017, "Attention Is All
You Need", arXiv:1706.03762. One attention head h of H reads the tokens x_1..x_T (rows of X,
width D) through three projections and mixes the values by how well queries match keys:

    Q_h = X W_q^h,   K_h = X W_k^h,   V_h = X W_v^h                (each [T, D/H])
    A_h = softmax( Q_h K_hᵀ / √(D/H)  +  M )                       (M_ij = 0 if i may see j,
                                                                     -∞ otherwise)
    attention(X) = [A_1 V_1, ..., A_H V_H] W_o

The mask M is what turns the transformer into a *learner*: with the causal mask (token i sees
tokens j <= i) the output at position i can only depend on what came before it in the prompt,
the same honesty as the one-step label offset of the black-box LSTM (memory/black_box.py). Here
the mask is a boolean [T, T] tensor, True = may attend, and the -∞ is written with masked_fill.

A block is pre-LayerNorm, the form of GPT-2, which Garg, Tsipras, Liang & Valiant 2022 train
(arXiv:2208.01066; in-context regression, regression.py):

    X ← X + attention(LN(X))
    X ← X + MLP(LN(X))          MLP: D → 4D → D with a GELU in between

and the transformer is a stack of blocks followed by a final LayerNorm. No dropout (Garg et al.
set GPT-2's to zero): the tasks are drawn afresh every step, so there is little to overfit.

To show what a query attends to, set `keep_attention = True` on a SelfAttention (or call
`Transformer.keep_attention(True)`): each forward then stores its weights A, [B, H, T, T], in
`last_attention`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def causal_mask(length: int, device: str | torch.device | None = None) -> torch.Tensor:
    """Bool [length, length]: entry (i, j) is True when position i may attend to j, i.e. j <= i."""
    if length < 1:
        raise ValueError(f"length={length}; a mask needs length >= 1 positions")
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def check_tokens(tokens: torch.Tensor, mask: torch.Tensor, d_model: int) -> None:
    """Raise ValueError unless tokens are [B, T, d_model] and mask a bool [T, T] in which every
    position may attend to something (a row of False would make its softmax 0/0)."""
    if tokens.ndim != 3 or tokens.shape[-1] != d_model:
        raise ValueError(
            f"tokens has shape {tuple(tokens.shape)}; expected [batch, length, d_model={d_model}]"
            " (for one sequence, add a leading batch dimension: tokens[None])"
        )
    length = tokens.shape[1]
    if mask.dtype != torch.bool or tuple(mask.shape) != (length, length):
        raise ValueError(
            f"mask is {mask.dtype} of shape {tuple(mask.shape)}; expected torch.bool of shape"
            f" [{length}, {length}] (True = may attend), e.g. causal_mask({length})"
        )
    if not bool(mask.any(dim=-1).all()):
        raise ValueError("mask has a row with no True entry; let every position see itself")


class SelfAttention(nn.Module):
    """Multi-head self-attention: forward(x [B, T, D], mask [T, T] bool) -> [B, T, D]."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        if heads < 1 or d_model % heads != 0:
            raise ValueError(
                f"d_model={d_model}, heads={heads}; the heads split d_model evenly, so use"
                " heads >= 1 dividing d_model (e.g. d_model=64, heads=4)"
            )
        self.d_model, self.heads = d_model, heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None  # [B, H, T, T] if keep_attention

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_tokens(x, mask, self.d_model)
        batch, length, _ = x.shape
        d_head = self.d_model // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, D/H]
            return t.view(batch, length, self.heads, d_head).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)  # [B, H, T, T]
        # -inf where attending is forbidden: softmax gives those positions exactly zero weight.
        weights = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        if self.keep_attention:
            self.last_attention = weights.detach()
        mixed = (weights @ v).transpose(1, 2).reshape(batch, length, self.d_model)
        return self.out(mixed)


class Block(nn.Module):
    """One pre-LayerNorm transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = SelfAttention(d_model, heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of `layers` Blocks and a final LayerNorm: forward(tokens [B, T, D], mask) ->
    [B, T, D]. Where the tokens come from and what is read off them is the caller's task."""

    def __init__(self, d_model: int = 64, layers: int = 4, heads: int = 4) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers={layers}; use layers >= 1")
        self.d_model = d_model
        self.blocks = nn.ModuleList([Block(d_model, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_tokens(tokens, mask, self.d_model)  # before any layer runs
        x = tokens
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def keep_attention(self, keep: bool = True) -> None:
        """Store (or stop storing) every layer's attention weights in its `last_attention`."""
        for block in self.blocks:
            block.attention.keep_attention = keep
            block.attention.last_attention = None

    def attention_maps(self) -> list[torch.Tensor]:
        """The stored attention weights, one [B, H, T, T] per layer (after keep_attention)."""
        maps = [block.attention.last_attention for block in self.blocks]
        if any(m is None for m in maps):
            raise ValueError("no attention stored; call keep_attention(True), then run forward")
        return [m for m in maps if m is not None]
