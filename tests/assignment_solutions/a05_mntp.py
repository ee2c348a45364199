"""A worked solution of assignment 05, written from the stubs' docstrings alone."""

import torch
import torch.nn.functional as F

IGNORE = -100


def mask_tokens(ids, mask_token_id, special_ids, vocab_size, prob, generator):
    eligible = ~torch.isin(ids, torch.tensor(sorted(special_ids)))
    eligible[:, 0] = False
    selected = (torch.rand(ids.shape, generator=generator) < prob) & eligible
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    u = torch.rand(ids.shape, generator=generator)
    random_tokens = torch.randint(vocab_size, ids.shape, generator=generator)
    inputs = torch.where(selected & (u < 0.8), torch.full_like(ids, mask_token_id), ids)
    inputs = torch.where(selected & (u >= 0.8) & (u < 0.9), random_tokens, inputs)
    return inputs, labels


def mntp_loss(hidden, labels, lm_head):
    hidden, labels = hidden[:, :-1], labels[:, 1:]  # state i − 1 → token i
    where = labels != IGNORE
    return F.cross_entropy(lm_head(hidden[where]), labels[where])
