"""Issue 3: poolers, right under left and right padding."""

import pytest
import torch
from torch.testing import assert_close

from l2v.pooling import POOLINGS, pool


def test_hand_computed_values():
    h = torch.tensor([[[1.0], [2.0], [3.0], [9.0]]])  # (1, 4, 1)
    m = torch.tensor([[1, 1, 1, 0]])
    assert pool(h, m, "mean").item() == pytest.approx(2.0)
    assert pool(h, m, "weighted_mean").item() == pytest.approx((1 * 1 + 2 * 2 + 3 * 3) / 6)
    assert pool(h, m, "eos").item() == 3.0
    assert pool(h, m, "bos").item() == 1.0


@pytest.mark.parametrize("method", POOLINGS)
def test_padding_side_does_not_matter(method):
    torch.manual_seed(0)
    lengths, T, D = [5, 2, 4], 6, 3
    seqs = [torch.randn(n, D) for n in lengths]
    left, right = torch.randn(3, T, D), torch.randn(3, T, D)  # random junk in the padding
    ml, mr = torch.zeros(3, T, dtype=torch.long), torch.zeros(3, T, dtype=torch.long)
    for b, s in enumerate(seqs):
        n = len(s)
        left[b, T - n:], ml[b, T - n:] = s, 1
        right[b, :n], mr[b, :n] = s, 1
    alone = torch.stack([pool(s[None], torch.ones(1, len(s), dtype=torch.long), method)[0] for s in seqs])
    assert_close(pool(left, ml, method), alone)
    assert_close(pool(right, mr, method), alone)


def test_unknown_pooling():
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pool(torch.zeros(1, 1, 1), torch.ones(1, 1), "max")
