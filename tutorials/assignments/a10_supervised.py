"""Assignment 10 (extension) — LLM2Vec step 4: supervised contrastive training with hard negatives
and instructions (the library's l2v/supervised.py and l2v/contrastive.py).

Grade with

    python -m pytest tutorials/assignments/test_a10_supervised.py
"""

import torch


def supervised_loss(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """q, p, n (B, D): the embeddings of B queries, their relevant documents and their hard
    negatives. Query i's candidates are every document of the batch: the B positives, then the B
    hard negatives (2B). Row i holds the cosine similarity of q[i] to each candidate, times
    `scale`; the right answer is candidate i (its own positive). The loss is the mean
    cross-entropy over the B rows."""
    # TODO
    raise NotImplementedError("supervised_loss")


def training_texts(triples: list[dict], instruction: str) -> tuple[list, list[str], list[str]]:
    """triples: [{"query", "positive", "negative"}, ...] → (queries, positives, negatives), each in
    the order given. Queries are [instruction, query] pairs (the Encoder's form: the instruction is
    attended to, not pooled); documents — positives and negatives — are plain strings: LLM2Vec puts
    the instruction on the query side only."""
    # TODO
    raise NotImplementedError("training_texts")
