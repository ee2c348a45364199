"""Assignment 07 — the two numbers an embedding benchmark reports (tutorial: tutorials/07_evaluation.ipynb).

Fill in the two functions (plain Python, numpy or torch — no scipy, no l2v). Grade with

    python -m pytest tutorials/assignments/test_a07_evaluation.py

The grader checks them against scipy and against trec_eval's rules (what MTEB reports): STS tasks
score a model by Spearman correlation, retrieval tasks by nDCG@10.
"""


def spearman(a, b) -> float:
    """Spearman's rank correlation of two equally long sequences of numbers (lists or 1-D arrays):
    the Pearson correlation of their ranks. Ranks are 1-based, and tied values share the average of
    the ranks they span: [10, 20, 20, 30] → [1, 2.5, 2.5, 4]. Returns a Python float."""
    # TODO: a rank function that handles ties, then Pearson on the ranks
    raise NotImplementedError("spearman")


def ndcg_at_10(scores: dict, qrels: dict) -> float:
    """nDCG@10 of one query, as trec_eval computes it.

    scores: document id (str) → the model's score (every document retrieved for the query).
    qrels:  document id (str) → relevance judgement (0 not relevant, 1, 2, … more relevant); a
            document absent from qrels has relevance 0.

    - Rank the documents by score, highest first; equal scores are ordered by document id,
      descending (trec_eval's rule for ties, so the number does not depend on dict order).
    - DCG@10 = the sum over ranks r = 1 … 10 of rel(r) / log2(r + 1): the gain is the relevance
      itself (linear, not 2^rel − 1).
    - IDCG@10 = the same sum for the ideal ranking: all of qrels' relevance values, highest first,
      the top 10 — relevant documents the model did not retrieve count here too.
    - Return DCG / IDCG, or 0.0 when the query has no relevant document. A Python float.
    """
    # TODO
    raise NotImplementedError("ndcg_at_10")
