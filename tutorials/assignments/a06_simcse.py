"""Assignment 06 — unsupervised SimCSE (tutorial: tutorials/06_simcse.ipynb).

Grade with

    python -m pytest tutorials/assignments/test_a06_simcse.py
"""

import torch


def info_nce(a: torch.Tensor, b: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """a, b (B, D): two views of the same B sentences. Row i of the score matrix holds the cosine
    similarity of a[i] to every b[j], times `scale` (1 / temperature; 20 ↔ 0.05). The loss is the
    mean cross-entropy of each row with the right answer on the diagonal (one direction, a → b)."""
    # TODO
    raise NotImplementedError("info_nce")


def two_views(encoder, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed every sentence of `batch` twice in ONE forward pass: stack the batch on itself
    (input_ids, attention_mask and pool_mask, each (B, T) → (2B, T)), make an l2v Batch of them,
    call encoder.embed once (→ (2B, D)) and split. In training mode, dropout differs per row, so
    rows i and B + i are two different views of sentence i."""
    # TODO: from l2v import Batch
    raise NotImplementedError("two_views")


def alignment(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Wang & Isola: the mean over i of ‖a[i] − b[i]‖² (a, b (N, D) unit vectors; a scalar)."""
    # TODO
    raise NotImplementedError("alignment")


def uniformity(x: torch.Tensor) -> torch.Tensor:
    """Wang & Isola: log of the mean over all pairs i < j of exp(−2‖x[i] − x[j]‖²) (x (N, D) unit
    vectors; a scalar)."""
    # TODO
    raise NotImplementedError("uniformity")
