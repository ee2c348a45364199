"""From token states to one vector per text.

All poolers take hidden states (B, T, D) and a mask (B, T) of the tokens that may be pooled, and
are correct under left and right padding. The encoder passes the *text* tokens for mean, weighted
mean, last and EOS (instruction tokens were attended to, but are left out here), and all real
tokens for BOS. The LLM2Vec paper finds mean pooling best, even for causal models.

The three single-token poolings, as the official llm2vec (0.2.3) defines them:

    last   the last token of the text as it is               (its `last_token` mode)
    eos    an EOS token *appended* to every text, its state  (its `eos_token` mode)
    bos    the BOS token the tokenizer puts first             (its `bos_token` mode)

`eos` and `last` pick the same position — the last pooled one; they differ in the input: for
`eos` the Encoder appends the tokenizer's EOS id after each text (attended to, like every token),
so that position holds EOS. Most LLMs' tokenizers add no EOS of their own (LLaMA-2, Mistral,
SmolLM2), so without the append "EOS pooling" is last-token pooling under another name.
"""

from __future__ import annotations

import torch

POOLINGS = ("mean", "weighted_mean", "eos", "last", "bos")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def weighted_mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Position-weighted mean (SGPT): the k-th pooled token gets weight k. In a causal model later
    tokens have seen more of the text, so they count more."""
    w = (mask.cumsum(1) * mask).to(hidden.dtype).unsqueeze(-1)  # (B, T, 1): 1, 2, ... over pooled tokens
    return (hidden * w).sum(1) / w.sum(1).clamp(min=1)


def last_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state of the last pooled token (the only one a causal model lets see the whole text)."""
    T = mask.shape[1]
    last = (torch.arange(T, device=mask.device) * mask).argmax(1)  # (B,) index of the last 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def eos_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state of the appended EOS token: the last pooled position of a batch whose texts end in
    EOS (the Encoder appends it for pooling="eos"; see the module docstring)."""
    return last_pool(hidden, mask)


def bos_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state of the first real token."""
    T = mask.shape[1]
    first = (torch.arange(T, 0, -1, device=mask.device) * mask).argmax(1)  # (B,) index of the first 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def pool(hidden: torch.Tensor, mask: torch.Tensor, method: str = "mean") -> torch.Tensor:
    try:
        fn = {"mean": mean_pool, "weighted_mean": weighted_mean_pool, "eos": eos_pool, "last": last_pool,
              "bos": bos_pool}[method]
    except KeyError:
        raise ValueError(f"unknown pooling {method!r}: choose one of {', '.join(POOLINGS)}") from None
    return fn(hidden, mask)
