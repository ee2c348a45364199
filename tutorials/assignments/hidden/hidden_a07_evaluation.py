"""Hidden checks for assignment 07: document ids that sort differently as strings and as numbers."""

import math

import torch

from grading import draw, expect_close, load

a07 = load("a07_evaluation")
POINTS = {"test_ids_compare_as_strings": 2}


def test_ids_compare_as_strings():
    # "9" > "10" as strings: trec_eval compares ids as strings, so the tie puts the one-digit id first.
    g = draw(7)
    one = int(torch.randint(2, 10, (1,), generator=g))  # a one-digit id …
    two = 10 * int(torch.randint(1, one, (1,), generator=g)) + int(torch.randint(0, 10, (1,), generator=g))  # … and a
    scores = {str(two): 1.0, str(one): 1.0, "doc": 0.5}  # two-digit one that is larger as a number, smaller as a string
    qrels = {str(two): 1}
    expected = (1 / math.log2(3)) / 1.0
    expect_close(torch.tensor(float(a07.ndcg_at_10(scores, qrels)), dtype=torch.float64),
                 torch.tensor(expected, dtype=torch.float64), "ndcg_at_10 with numeric-looking ids tied", atol=1e-9)
