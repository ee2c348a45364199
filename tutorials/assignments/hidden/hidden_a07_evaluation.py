"""Hidden checks for assignment 07: document ids that sort differently as strings and as numbers."""

import math

import torch

from grading import expect_close, load

a07 = load("a07_evaluation")
POINTS = {"test_ids_compare_as_strings": 2}


def test_ids_compare_as_strings():
    # "9" > "10" as strings: trec_eval compares ids as strings, so the tie puts "9" first.
    scores = {"10": 1.0, "9": 1.0, "8": 0.5}
    qrels = {"10": 1}
    expected = (1 / math.log2(3)) / 1.0
    expect_close(torch.tensor(float(a07.ndcg_at_10(scores, qrels)), dtype=torch.float64),
                 torch.tensor(expected, dtype=torch.float64), "ndcg_at_10 with numeric-looking ids tied", atol=1e-9)
