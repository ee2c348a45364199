"""Grader for assignment 03: each pooling against a row-by-row computation on the unpadded texts,
with the same texts padded on the left and on the right."""

import pytest
import torch

from grading import expect_close, load, require

a03 = load("a03_pooling")
POINTS = {"test_text_mask": 2, "test_mean_pool": 2, "test_weighted_mean_pool": 2, "test_eos_pool": 2,
          "test_eos_pool_refuses_a_batch_without_eos": 1}
LENGTHS = [7, 4, 6, 3]  # real tokens per text: BOS, instruction, text, EOS
PREFIX = [1, 3, 1, 2]  # of which the leading ones not pooled: BOS (+ instruction)
T, D, BOS, EOS, PAD = 9, 8, 1, 2, 0  # T > every length: every row is padded
SIDES = ["left", "right"]


def texts(seed=0):
    """Each text's real token ids and states, unpadded: what every reference is computed from."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in LENGTHS:
        ids = torch.randint(3, 50, (n,), generator=g)
        ids[0], ids[-1] = BOS, EOS
        out.append((ids, torch.randn(n, D, generator=g)))
    return out


def batch(side, seed=0):
    """→ hidden (B, T, D), attention_mask (B, T), input_ids (B, T), the text's positions per row.
    Padding positions hold large states, so pooling any of them shows."""
    g = torch.Generator().manual_seed(seed + 1)
    hidden = 100 + torch.randn(len(LENGTHS), T, D, generator=g)
    attention = torch.zeros(len(LENGTHS), T, dtype=torch.long)
    input_ids = torch.full((len(LENGTHS), T), PAD)
    for b, (ids, states) in enumerate(texts(seed)):
        start = T - len(ids) if side == "left" else 0
        hidden[b, start:start + len(ids)] = states
        attention[b, start:start + len(ids)] = 1
        input_ids[b, start:start + len(ids)] = ids
    return hidden, attention, input_ids


def pool_mask(attention):
    """The right pool mask, from the rule: real tokens after each row's first PREFIX[b]."""
    return ((attention.cumsum(1) > torch.tensor(PREFIX)[:, None]) & attention.bool()).to(attention.dtype)


def per_text(fn):
    return torch.stack([fn(states[p:]) for (_, states), p in zip(texts(), PREFIX)])


@pytest.mark.parametrize("side", SIDES)
def test_text_mask(side):
    _, attention, _ = batch(side)
    expected = pool_mask(attention)
    positional = attention.clone()
    for b, p in enumerate(PREFIX):
        positional[b, :p] = 0
    shifted = lambda k: ((attention.cumsum(1) > torch.tensor(PREFIX)[:, None] + k) & attention.bool()).long()
    got = a03.text_mask(attention.clone(), torch.tensor(PREFIX))
    require(isinstance(got, torch.Tensor) and got.dtype == attention.dtype,
            f"text_mask returns a tensor of attention_mask's dtype ({attention.dtype}), got "
            f"{getattr(got, 'dtype', type(got).__name__)}")
    expect_close(got, expected, f"text_mask ({side} padding)", mistakes={
        "the instruction is the first n_prefix REAL tokens of a row: under left padding they do not start at "
        "position 0 (count real tokens with attention_mask.cumsum(1))": positional,
        "nothing was left out: the first n_prefix real tokens (BOS, instruction) are attended to but not pooled":
            attention,
        "one real token too few was left out (n_prefix of them, BOS included)": shifted(-1),
        "one real token too many was left out: exactly the first n_prefix": shifted(1),
    })


@pytest.mark.parametrize("side", SIDES)
def test_mean_pool(side):
    hidden, attention, _ = batch(side)
    mask = pool_mask(attention)
    m = mask[..., None].float()
    expect_close(a03.mean_pool(hidden, mask), per_text(lambda s: s.mean(0)), f"mean_pool ({side} padding)", mistakes={
        "padding and instruction were averaged in: sum only where pool_mask is 1": hidden.mean(1),
        "divide by the number of pooled tokens of the row, not by T": (hidden * m).sum(1) / T,
        "a mean: divide the masked sum by the number of pooled tokens": (hidden * m).sum(1),
        "the mean is over positions (dim 1), one vector per text": (hidden * m).mean(-1),
    })


@pytest.mark.parametrize("side", SIDES)
def test_weighted_mean_pool(side):
    hidden, attention, _ = batch(side)
    mask = pool_mask(attention)

    def weighted(w):  # w (B, T)
        w = (w * mask).float()[..., None]
        return (hidden * w).sum(1) / w.sum(1)

    def reference(s):
        w = torch.arange(1, len(s) + 1, dtype=torch.float32)[:, None]
        return (s * w).sum(0) / w.sum()

    k = mask.cumsum(1)
    expect_close(a03.weighted_mean_pool(hidden, mask), per_text(reference), f"weighted_mean_pool ({side} padding)",
                 mistakes={
        "weight k counts the row's POOLED tokens (1, 2, … from its first pooled one), not positions in the padded "
        "row": weighted(torch.arange(1, T + 1).expand(len(LENGTHS), T)),
        "that is the plain mean: the k-th pooled token gets weight k": weighted(torch.ones_like(mask)),
        "later tokens weigh more: weight k goes to the k-th pooled token from the LEFT (yours are reversed)":
            weighted((k.max(1, keepdim=True).values + 1 - k)),
        "divide by the sum of the weights (1 + 2 + … + n), not by the number of tokens":
            (hidden * (k * mask)[..., None]).sum(1) / mask.sum(1, keepdim=True),
    })


@pytest.mark.parametrize("side", SIDES)
def test_eos_pool(side):
    hidden, attention, input_ids = batch(side)
    rows = torch.arange(len(LENGTHS))
    expect_close(a03.eos_pool(hidden, attention, input_ids.clone(), EOS), per_text(lambda s: s[-1]),
                 f"eos_pool ({side} padding)", mistakes={
        "the last POSITION is padding when the batch is padded on the right: take each row's last REAL token":
            hidden[:, -1],
        "under left padding a row's last real token is at position T − 1, not at (its number of real tokens) − 1":
            hidden[rows, attention.sum(1) - 1],
        "that is the FIRST real token (BOS pooling); EOS pooling takes the last": torch.stack(
            [hidden[b, attention[b].nonzero()[0, 0]] for b in rows]),
    })


def test_eos_pool_refuses_a_batch_without_eos():
    hidden, attention, input_ids = batch("left")
    input_ids[2, -1] = 5  # row 2 ends with an ordinary token: no EOS was appended
    try:
        a03.eos_pool(hidden, attention, input_ids, EOS)
    except ValueError as e:
        require("2" in str(e), f"the ValueError should name the row without an EOS (row 2); it says: {e}")
        return
    raise AssertionError("row 2's last real token is not eos_id, and eos_pool returned a vector anyway: raise a "
                         "ValueError naming the row (pooling a text token instead of the EOS is silently wrong)")
