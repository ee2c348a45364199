"""Hidden checks for assignment 03: a batch of one, no instruction, no padding."""

import torch

from grading import draw, expect_close, load

a03 = load("a03_pooling")
POINTS = {"test_one_unpadded_text": 2}


def test_one_unpadded_text():
    g = draw(5)
    hidden = torch.randn(1, 4, 3, generator=g)
    attention = torch.ones(1, 4, dtype=torch.long)
    mask = a03.text_mask(attention, torch.tensor([0]))
    expect_close(mask, attention, "text_mask with n_prefix 0 (nothing to leave out)")
    expect_close(a03.mean_pool(hidden, attention), hidden.mean(1), "mean_pool of one unpadded text")
    w = torch.arange(1.0, 5.0)[None, :, None]
    expect_close(a03.weighted_mean_pool(hidden, attention), (hidden * w).sum(1) / 10, "weighted_mean_pool, one text")
    expect_close(a03.eos_pool(hidden, attention, torch.tensor([[1, 7, 8, 2]]), 2), hidden[:, -1], "eos_pool, one text")
