"""Grader for assignment 10: the supervised loss against l2v's contrastive_loss (its scale and hard
negatives), and instructions on queries only."""

import torch
import torch.nn.functional as F

from grading import expect_close, expect_gradient, load, require
from l2v.contrastive import contrastive_loss  # the library's own: the reference

a10 = load("a10_supervised")
POINTS = {"test_supervised_loss": 5, "test_supervised_loss_gradient": 2, "test_training_texts": 3}


def embeddings(seed=0, B=6, D=16):
    """Hard negatives close to the positives, so leaving them out or misplacing them shows."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, D, generator=g)
    p = q + 2.0 * torch.randn(B, D, generator=g)
    n = p + 1.0 * torch.randn(B, D, generator=g)
    return q, p, n


def test_supervised_loss():
    q, p, n = embeddings()
    want = contrastive_loss(q, p, n, scale=20.0)
    cos = lambda a, b: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    target = torch.arange(len(q))
    own_negative = torch.cat([cos(q, p), (F.normalize(q, dim=-1) * F.normalize(n, dim=-1)).sum(-1, keepdim=True)], 1)
    expect_close(torch.as_tensor(a10.supervised_loss(q, p, n, scale=20.0)), want, "supervised_loss", mistakes={
        "the hard negatives are missing: every query's candidates are all B positives AND all B negatives":
            F.cross_entropy(20 * cos(q, p), target),
        "each query sees only its OWN hard negative: every negative of the batch is a candidate for every query":
            F.cross_entropy(20 * own_negative, target),
        "the candidates are cosine similarities: normalise before the dot products":
            F.cross_entropy(20 * q @ torch.cat([p, n]).T, target),
        "multiply by scale (1 / temperature), do not divide": F.cross_entropy(cos(q, torch.cat([p, n])) / 20, target),
        "use the scale argument": F.cross_entropy(cos(q, torch.cat([p, n])), target),
    })
    expect_close(torch.as_tensor(a10.supervised_loss(q, p, n, scale=50.0)), contrastive_loss(q, p, n, scale=50.0),
                 "supervised_loss with scale 50", mistakes={"use the scale argument, not 20":
                                                            contrastive_loss(q, p, n, scale=20.0)})


def test_supervised_loss_gradient():
    q, p, n = (t.requires_grad_() for t in embeddings(1))
    expect_gradient(a10.supervised_loss(q, p, n, scale=20.0), {"q": q, "p": p, "n": n},
                    contrastive_loss(q, p, n, scale=20.0), "supervised_loss")


def test_training_texts():
    triples = [{"query": f"question {i}", "positive": f"answer {i}", "negative": f"near miss {i}"} for i in range(3)]
    instruction = "Given a question, retrieve passages that answer it:"
    queries, positives, negatives = a10.training_texts(triples, instruction)
    require([list(x) if isinstance(x, (list, tuple)) else x for x in queries] == [[instruction, t["query"]] for t in triples],
            f"queries are [instruction, query] pairs, in order: got {queries[:1]} …")
    require(all(isinstance(d, str) for d in positives + negatives),
            "documents carry no instruction: positives and negatives are plain strings (LLM2Vec instructs queries only)")
    require(positives == [t["positive"] for t in triples] and negatives == [t["negative"] for t in triples],
            "positives and negatives in the triples' order (row i of each is triple i)")
