"""Grader for assignment 07: Spearman against scipy; nDCG@10 against a computation of trec_eval's
rules written out here (the course's own CI checks that computation against trec_eval itself,
through pytrec_eval). Each query below isolates one rule, so a broken rule is named."""

import math

import numpy as np
import torch
from scipy import stats

from grading import expect_close, load, require

a07 = load("a07_evaluation")
POINTS = {"test_spearman_without_ties": 1, "test_spearman_with_ties": 3, "test_spearman_takes_lists": 1,
          "test_ndcg_linear_gain": 2, "test_ndcg_ties_by_document_id": 2, "test_ndcg_ideal_from_qrels": 2,
          "test_ndcg_cut_at_10": 2, "test_ndcg_no_relevant_document": 1}


def as_number(x, what):
    require(isinstance(x, (float, int, np.floating)) or (isinstance(x, torch.Tensor) and x.numel() == 1),
            f"{what} returns one number (a Python float), got {type(x).__name__}")
    return torch.tensor(float(x), dtype=torch.float64)


def ranks(x, method):
    return stats.rankdata(x, method=method)


def pearson(a, b):
    return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])


def spearman_mistakes(a, b):
    return {
        "tied values share the AVERAGE of the ranks they span ([10, 20, 20, 30] → 1, 2.5, 2.5, 4); yours breaks "
        "ties by order (argsort of argsort)": torch.tensor(pearson(ranks(a, "ordinal"), ranks(b, "ordinal"))),
        "tied values share the AVERAGE of their ranks, not the lowest one (1, 2, 2, 4 is 'min' ranking)":
            torch.tensor(pearson(ranks(a, "min"), ranks(b, "min"))),
        "tied values share the AVERAGE of their ranks; 1, 2, 2, 3 is 'dense' ranking":
            torch.tensor(pearson(ranks(a, "dense"), ranks(b, "dense"))),
        "that is Pearson's correlation of the values: Spearman's is Pearson's of their RANKS":
            torch.tensor(pearson(a, b)),
    }


def test_spearman_without_ties():
    g = np.random.default_rng(0)
    a = g.normal(size=40)
    b = a + g.normal(size=40)
    expect_close(as_number(a07.spearman(a, b), "spearman"), torch.tensor(stats.spearmanr(a, b).statistic),
                 "spearman (no ties)", atol=1e-9, mistakes=spearman_mistakes(a, b))


def test_spearman_with_ties():
    g = np.random.default_rng(1)
    a = g.integers(0, 5, size=50).astype(float)  # gold scores on a 0–4 scale: many ties, as in STS
    b = np.round(a + g.normal(size=50), 1) // 1  # predictions with ties of their own
    expected = torch.tensor(stats.spearmanr(a, b).statistic)
    expect_close(as_number(a07.spearman(a, b), "spearman"), expected, "spearman (with ties)", atol=1e-9,
                 mistakes=spearman_mistakes(a, b))
    reversed_ = as_number(a07.spearman(a, -b), "spearman")
    expect_close(reversed_, -expected, "spearman(a, −b) = −spearman(a, b)", atol=1e-9)


def test_spearman_takes_lists():
    a, b = [3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]
    expect_close(as_number(a07.spearman(a, b), "spearman"), torch.tensor(stats.spearmanr(a, b).statistic),
                 "spearman of two Python lists of ints", atol=1e-9, mistakes=spearman_mistakes(a, b))


# ---------------------------------------------------------------- nDCG@10, trec_eval's way


def reference_ndcg(scores, qrels, k=10, gain=lambda r: r, ties="desc", ideal_from="qrels", cut_ideal=True, offset=1):
    """nDCG@k by trec_eval's rules; the keyword arguments give the well-known mistakes."""
    items = list(scores.items())
    if ties == "desc":  # by score, then document id, both descending
        ranking = [d for d, _ in sorted(items, key=lambda kv: (kv[1], kv[0]), reverse=True)]
    elif ties == "asc":  # by score descending, then document id ascending
        ranking = [d for d, _ in sorted(items, key=lambda kv: (-kv[1], kv[0]))]
    else:  # by score only: ties stay in the dict's order
        ranking = [d for d, _ in sorted(items, key=lambda kv: -kv[1])]
    dcg = sum(gain(qrels.get(d, 0)) / math.log2(r + offset) for r, d in enumerate(ranking[:k], 1))
    pool = qrels.values() if ideal_from == "qrels" else [qrels.get(d, 0) for d in scores]
    best = sorted((g for g in pool if g > 0), reverse=True)
    idcg = sum(gain(g) / math.log2(r + offset) for r, g in enumerate(best[:k] if cut_ideal else best, 1))
    return torch.tensor(dcg / idcg if idcg > 0 else 0.0, dtype=torch.float64)


def check_ndcg(scores, qrels, what):
    expected = reference_ndcg(scores, qrels)
    mistakes = {
        "the gain is the relevance itself (linear), not 2^rel − 1": reference_ndcg(scores, qrels, gain=lambda r: 2**r - 1),
        "equal scores are ordered by document id DESCENDING (trec_eval); yours orders them ascending (or leaves "
        "them in the dict's order)":
            reference_ndcg(scores, qrels, ties="asc"),
        "equal scores must be ordered by document id (descending), not left in the dict's order":
            reference_ndcg(scores, qrels, ties="dict"),
        "the ideal ranking is built from all of qrels' relevant documents, also those the model did not retrieve":
            reference_ndcg(scores, qrels, ideal_from="retrieved"),
        "the ideal DCG is cut at 10 too (the best 10 relevance values)": reference_ndcg(scores, qrels, cut_ideal=False),
        "the discount at rank r (1-based) is log2(r + 1): rank 1 is divided by log2 2 = 1":
            reference_ndcg(scores, qrels, offset=2),
    }
    got = as_number(a07.ndcg_at_10(dict(scores), dict(qrels)), "ndcg_at_10")
    expect_close(got, expected, what, atol=1e-9, mistakes={k: v for k, v in mistakes.items()
                                                            if not torch.isclose(v, expected, atol=1e-9)})


def test_ndcg_linear_gain():
    scores = {f"d{i}": 10.0 - i for i in range(8)}
    qrels = {"d0": 1, "d1": 3, "d3": 2, "d6": 1}
    check_ndcg(scores, qrels, "ndcg_at_10 with graded relevance (0–3)")


def test_ndcg_ties_by_document_id():
    # d1 (relevant) and d7 (not) tie at the top: trec_eval puts d7 first. Listed in the other order.
    scores = {"d1": 0.9, "d7": 0.9, "d2": 0.5, "d3": 0.4, "d4": 0.1}
    qrels = {"d1": 1, "d3": 1}
    check_ndcg(scores, qrels, "ndcg_at_10 with tied scores")


def test_ndcg_ideal_from_qrels():
    scores = {"a": 3.0, "b": 2.0, "c": 1.0}
    qrels = {"b": 1, "z": 2, "c": 0}  # z is relevant but was not retrieved; c is judged not relevant
    check_ndcg(scores, qrels, "ndcg_at_10 when a relevant document was not retrieved")


def test_ndcg_cut_at_10():
    scores = {f"doc{i:02d}": 1.0 / (i + 1) for i in range(15)}
    qrels = {f"doc{i:02d}": 1 for i in range(0, 15, 1) if i % 3 != 1}  # 10 relevant, two of them past rank 10
    qrels.update({"doc16": 2, "doc17": 1, "doc18": 1})  # more relevant documents than 10
    check_ndcg(scores, qrels, "ndcg_at_10 with 15 documents and 13 relevant ones")


def test_ndcg_no_relevant_document():
    got = a07.ndcg_at_10({"a": 1.0, "b": 0.5}, {"a": 0, "c": 0})
    require(not (isinstance(got, float) and math.isnan(got)), "a query with no relevant document scores 0.0, not NaN "
            "(0 / 0): return 0.0 when the ideal DCG is 0")
    expect_close(as_number(got, "ndcg_at_10"), torch.tensor(0.0, dtype=torch.float64),
                 "ndcg_at_10 of a query with no relevant document")
