"""A worked solution of assignment 10, written from the stubs' docstrings alone."""

import torch
import torch.nn.functional as F


def supervised_loss(q, p, n, scale=20.0):
    candidates = F.normalize(torch.cat([p, n]), dim=-1)  # (2B, D)
    scores = F.normalize(q, dim=-1) @ candidates.T * scale  # (B, 2B)
    return F.cross_entropy(scores, torch.arange(len(q)))


def training_texts(triples, instruction):
    queries = [[instruction, t["query"]] for t in triples]
    return queries, [t["positive"] for t in triples], [t["negative"] for t in triples]
