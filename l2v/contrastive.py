"""The contrastive loss of LLM2Vec's steps 3 and 4: InfoNCE with in-batch negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None,
                     scale: float = 20.0) -> torch.Tensor:
    """InfoNCE with in-batch negatives, one direction (as the official LLM2Vec code).

    anchors, positives (B, D); optional hard negatives (B, D) join the candidates. Row i of the
    score matrix holds anchor i's cosine similarity to every candidate, × scale (= 1/temperature;
    20 ↔ 0.05); the right answer for row i is candidate i.
    """
    if anchors.shape[0] < 2:
        raise ValueError("a contrastive loss needs at least 2 examples in a batch (in-batch negatives)")
    candidates = positives if negatives is None else torch.cat([positives, negatives])  # (B or 2B, D)
    scores = F.normalize(anchors, dim=-1) @ F.normalize(candidates, dim=-1).T * scale  # (B, B or 2B)
    target = torch.arange(anchors.shape[0], device=anchors.device)  # positives sit on the diagonal
    return F.cross_entropy(scores.float(), target)


def nested_dims(dim: int, smallest: int | None) -> list[int]:
    """The embedding sizes Matryoshka trains: dim, dim/2, dim/4, … down to `smallest` (None: [dim])."""
    if smallest is None:
        return [dim]
    if smallest > dim:
        raise ValueError(f"matryoshka {smallest} is larger than the embedding ({dim} dimensions)")
    dims = [dim]
    while dims[-1] // 2 >= smallest:
        dims.append(dims[-1] // 2)
    return dims


def matryoshka(loss_fn, dims: list[int]):
    """Matryoshka representation learning (Kusupati et al., 2022): `loss_fn` on the first d dimensions
    for each d in dims, averaged — so a prefix of the embedding is an embedding too (encode(truncate_dim=d))."""
    if len(dims) == 1:
        return loss_fn

    def nested(anchors, positives, negatives=None, scale=20.0):
        return sum(loss_fn(anchors[:, :d], positives[:, :d], None if negatives is None else negatives[:, :d],
                           scale=scale) for d in dims) / len(dims)

    return nested
