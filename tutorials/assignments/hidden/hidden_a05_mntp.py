"""Hidden checks for assignment 05: another probability, another set of special tokens, one row."""

import torch

from grading import draw, expect_close, grader_seed, load, require

a05 = load("a05_mntp")
POINTS = {"test_other_prob_and_specials": 2, "test_loss_with_one_label": 2}


def test_other_prob_and_specials():
    g = draw(9)
    ids = torch.randint(0, 60, (1, 4000), generator=g)
    special = {0, 1, 2} | {6 + int(i) for i in torch.randperm(54, generator=g)[:2]}  # two more, not the mask id 5
    inputs, labels = a05.mask_tokens(ids.clone(), 5, special, 60, 0.5, draw(1))
    selected = labels != a05.IGNORE
    eligible = ~torch.isin(ids, torch.tensor(sorted(special)))
    eligible[:, 0] = False
    require(not (selected & ~eligible).any(), f"with special_ids {sorted(special)}: a special token or position 0 "
            "was selected — use the special_ids argument, not fixed ids")
    rate = selected[eligible].float().mean().item()
    require(abs(rate - 0.5) < 0.03, f"prob = 0.5 selected {rate:.3f} of the eligible positions: use the prob argument")


def test_loss_with_one_label():
    torch.manual_seed(1000 * grader_seed() + 2)  # the head's own initialisation draws from torch's generator
    head = torch.nn.Linear(6, 11, bias=False)
    hidden = torch.randn(2, 5, 6, generator=draw(2))
    labels = torch.full((2, 5), a05.IGNORE)
    labels[1, 3] = 4
    expected = torch.nn.functional.cross_entropy(head(hidden[1, 2])[None], torch.tensor([4]))
    with torch.no_grad():
        expect_close(torch.as_tensor(a05.mntp_loss(hidden, labels, head)), expected,
                     "mntp_loss with one labelled token (row 1, position 3 ← state 2)")
