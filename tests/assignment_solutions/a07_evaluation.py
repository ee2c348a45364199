"""A worked solution of assignment 07, written from the stubs' docstrings alone."""

import math


def _ranks(x):
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):  # positions i … j (0-based) share the mean of ranks i+1 … j+1
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a, b):
    ra, rb = _ranks([float(v) for v in a]), _ranks([float(v) for v in b])
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def ndcg_at_10(scores, qrels):
    ranking = sorted(scores, key=lambda d: (scores[d], d), reverse=True)
    dcg = sum(qrels.get(d, 0) / math.log2(r + 1) for r, d in enumerate(ranking[:10], 1))
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(r + 1) for r, g in enumerate(ideal, 1))
    return dcg / idcg if idcg > 0 else 0.0
