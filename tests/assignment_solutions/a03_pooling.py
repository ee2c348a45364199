"""A worked solution of assignment 03, written from the stubs' docstrings alone."""

import torch


def text_mask(attention_mask, n_prefix):
    seen = attention_mask.cumsum(1)  # (B, T): how many real tokens up to and including each position
    return ((seen > n_prefix[:, None]) & (attention_mask == 1)).to(attention_mask.dtype)


def mean_pool(hidden, pool_mask):
    m = pool_mask[..., None].to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1)


def weighted_mean_pool(hidden, pool_mask):
    w = (pool_mask.cumsum(1) * pool_mask)[..., None].to(hidden.dtype)  # (B, T, 1): 1, 2, … at pooled tokens
    return (hidden * w).sum(1) / w.sum(1)


def eos_pool(hidden, attention_mask, input_ids, eos_id):
    T = attention_mask.shape[1]
    last = (torch.arange(T) * attention_mask).argmax(1)  # (B,) position of each row's last real token
    rows = torch.arange(len(hidden))
    missing = (input_ids[rows, last] != eos_id).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"rows {missing} do not end with the EOS token {eos_id}")
    return hidden[rows, last]
