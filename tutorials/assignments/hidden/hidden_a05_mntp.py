"""Hidden checks for assignment 05: another probability, another set of special tokens, one row."""

import torch

from grading import expect_close, load, require

a05 = load("a05_mntp")
POINTS = {"test_other_prob_and_specials": 2, "test_loss_with_one_label": 2}


def test_other_prob_and_specials():
    g = torch.Generator().manual_seed(9)
    ids = torch.randint(0, 60, (1, 4000), generator=g)
    special = {0, 1, 2, 9, 33}
    inputs, labels = a05.mask_tokens(ids.clone(), 5, special, 60, 0.5, torch.Generator().manual_seed(1))
    selected = labels != a05.IGNORE
    eligible = ~torch.isin(ids, torch.tensor(sorted(special)))
    eligible[:, 0] = False
    require(not (selected & ~eligible).any(), "with special_ids {0, 1, 2, 9, 33}: a special token or position 0 "
            "was selected — use the special_ids argument, not fixed ids")
    rate = selected[eligible].float().mean().item()
    require(abs(rate - 0.5) < 0.03, f"prob = 0.5 selected {rate:.3f} of the eligible positions: use the prob argument")


def test_loss_with_one_label():
    torch.manual_seed(2)
    head = torch.nn.Linear(6, 11, bias=False)
    hidden = torch.randn(2, 5, 6)
    labels = torch.full((2, 5), a05.IGNORE)
    labels[1, 3] = 4
    expected = torch.nn.functional.cross_entropy(head(hidden[1, 2])[None], torch.tensor([4]))
    with torch.no_grad():
        expect_close(torch.as_tensor(a05.mntp_loss(hidden, labels, head)), expected,
                     "mntp_loss with one labelled token (row 1, position 3 ← state 2)")
