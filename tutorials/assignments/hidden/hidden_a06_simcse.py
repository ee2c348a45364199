"""Hidden checks for assignment 06: the default scale, a batch of two."""

import torch
import torch.nn.functional as F

from grading import draw, expect_close, load

a06 = load("a06_simcse")
POINTS = {"test_default_scale_batch_of_two": 2}


def test_default_scale_batch_of_two():
    g = draw(11)
    a, b = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    cos = F.cosine_similarity(a[:, None], b[None], dim=-1)
    expect_close(torch.as_tensor(a06.info_nce(a, b)), F.cross_entropy(20 * cos, torch.arange(2)),
                 "info_nce with the default scale (20) on B = 2")
