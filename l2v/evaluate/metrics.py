"""The metrics MTEB reports, written out with numpy so they can be read (and checked against
scipy, scikit-learn and mteb in tests/test_evaluate.py).

Conventions follow MTEB 2.x: Spearman with average ranks for ties; average precision as
scikit-learn computes it (tied scores form one threshold); retrieval metrics as trec_eval
computes them (linear gain, log2 discount, ties broken by document id, descending).
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- correlation


def rankdata(x) -> np.ndarray:
    """1-based ranks; tied values share the average of their ranks (scipy's 'average')."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x))
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + 1 + end) / 2  # mean of ranks start+1 … end
            start = end
    return ranks


def pearson(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def spearman(a, b) -> float:
    return pearson(rankdata(a), rankdata(b))


# ---------------------------------------------------------------- similarity


def unit(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def paired_cosine(a, b) -> np.ndarray:
    return (unit(a) * unit(b)).sum(-1)


# ---------------------------------------------------------------- ranking of a binary label


def average_precision(labels, scores) -> float:
    """Σ over thresholds (from the highest score down) of (recall gain) × precision; tied scores
    are one threshold, as in scikit-learn's average_precision_score."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, np.float64)
    order = np.argsort(-scores, kind="mergesort")
    labels, scores = labels[order], scores[order]
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]  # the end of each group of equal scores
    tp = np.cumsum(labels)[last_of_tie]
    seen = np.arange(1, len(labels) + 1)[last_of_tie]
    precision, recall = tp / seen, tp / max(tp[-1], 1)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# ---------------------------------------------------------------- clustering


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def v_measure(labels_true, labels_pred) -> float:
    """Harmonic mean of homogeneity (each cluster holds one class) and completeness (each class sits
    in one cluster), from conditional entropies of the contingency table."""
    _, t = np.unique(labels_true, return_inverse=True)
    _, p = np.unique(labels_pred, return_inverse=True)
    table = np.zeros((t.max() + 1, p.max() + 1))
    np.add.at(table, (t, p), 1)
    n, n_c, n_k = table.sum(), table.sum(1), table.sum(0)  # all, per class, per cluster
    h_c, h_k = _entropy(n_c), _entropy(n_k)
    c, k = np.nonzero(table)
    n_ck = table[c, k]
    h_c_given_k = -float(np.sum(n_ck / n * np.log(n_ck / n_k[k])))
    h_k_given_c = -float(np.sum(n_ck / n * np.log(n_ck / n_c[c])))
    homogeneity = 1.0 if h_c == 0 else 1 - h_c_given_k / h_c
    completeness = 1.0 if h_k == 0 else 1 - h_k_given_c / h_k
    if homogeneity + completeness == 0:
        return 0.0
    return 2 * homogeneity * completeness / (homogeneity + completeness)


# ---------------------------------------------------------------- retrieval (trec_eval conventions)


def trec_ranking(scores: dict[str, float]) -> list[str]:
    """Documents by score, highest first; equal scores by document id, descending (trec_eval)."""
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def ndcg_at_k(ranking: list[str], qrels: dict[str, int], k: int) -> float:
    gains = [qrels.get(d, 0) for d in ranking[:k]]
    dcg = sum(g / np.log2(r + 2) for r, g in enumerate(gains) if g > 0)
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / np.log2(r + 2) for r, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def average_precision_at_k(ranking: list[str], qrels: dict[str, int], k: int) -> float:
    """trec_eval's AP cut at k: precision at each relevant hit in the top k, over all relevant docs."""
    n_relevant = sum(1 for g in qrels.values() if g > 0)
    hits, total = 0, 0.0
    for r, d in enumerate(ranking[:k], 1):
        if qrels.get(d, 0) > 0:
            hits += 1
            total += hits / r
    return total / n_relevant if n_relevant else 0.0


def recall_at_k(ranking: list[str], qrels: dict[str, int], k: int) -> float:
    relevant = {d for d, g in qrels.items() if g > 0}
    return len(relevant & set(ranking[:k])) / len(relevant) if relevant else 0.0


def reciprocal_rank_at_k(ranking: list[str], qrels: dict[str, int], k: int) -> float:
    for r, d in enumerate(ranking[:k], 1):
        if qrels.get(d, 0) > 0:
            return 1.0 / r
    return 0.0
