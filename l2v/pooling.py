"""From token states to one vector per text.

All poolers take hidden states (B, T, D) and a mask (B, T) of the tokens that may be pooled, and
are correct under left and right padding. The encoder passes the *text* tokens for mean, weighted
mean and EOS (instruction tokens were attended to, but are left out here), and all real tokens
for BOS. The LLM2Vec paper finds mean pooling best, even for causal models.
"""

from __future__ import annotations

import torch

POOLINGS = ("mean", "weighted_mean", "eos", "bos")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def weighted_mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Position-weighted mean (SGPT): the k-th pooled token gets weight k. In a causal model later
    tokens have seen more of the text, so they count more."""
    w = (mask.cumsum(1) * mask).to(hidden.dtype).unsqueeze(-1)  # (B, T, 1): 1, 2, ... over pooled tokens
    return (hidden * w).sum(1) / w.sum(1).clamp(min=1)


def eos_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state of the last pooled token (the only one a causal model lets see the whole text)."""
    T = mask.shape[1]
    last = (torch.arange(T, device=mask.device) * mask).argmax(1)  # (B,) index of the last 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def bos_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state of the first real token."""
    T = mask.shape[1]
    first = (torch.arange(T, 0, -1, device=mask.device) * mask).argmax(1)  # (B,) index of the first 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def pool(hidden: torch.Tensor, mask: torch.Tensor, method: str = "mean") -> torch.Tensor:
    try:
        fn = {"mean": mean_pool, "weighted_mean": weighted_mean_pool, "eos": eos_pool, "bos": bos_pool}[method]
    except KeyError:
        raise ValueError(f"unknown pooling {method!r}: choose one of {', '.join(POOLINGS)}") from None
    return fn(hidden, mask)
