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
