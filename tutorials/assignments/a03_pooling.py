"""Assignment 03 — pooling: from token states to one vector per text (tutorial: tutorials/03_pooling.ipynb).

Fill in the four functions (plain torch, no l2v). Grade with

    python -m pytest tutorials/assignments/test_a03_pooling.py

A batch arrives padded — on the left (l2v's default for embeddings) or on the right — with two
masks, as in l2v's Batch: attention_mask (1 = a real token: BOS, instruction, text, EOS; 0 =
padding) and pool_mask (1 = a text token to pool over). Every function must give a text the same
vector whichever side it was padded on; the grader pads the same texts both ways.
Shapes: B texts, T positions, D hidden.
"""

import torch


def text_mask(attention_mask: torch.Tensor, n_prefix: torch.Tensor) -> torch.Tensor:
    """The pool mask: attention_mask (B, T) without each row's first n_prefix[b] REAL tokens (its
    BOS and instruction: the model attends to them, but they are not the text, so they are not
    pooled). n_prefix (B,) integers. → (B, T), the dtype of attention_mask. Under left padding a
    row's real tokens do not start at position 0."""
    # TODO: count the real tokens from the left (cumsum) and keep those past n_prefix
    raise NotImplementedError("text_mask")


def mean_pool(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, D), pool_mask (B, T) → (B, D): the mean of the states where pool_mask is 1
    (every row has at least one)."""
    # TODO
    raise NotImplementedError("mean_pool")


def weighted_mean_pool(hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """Position-weighted mean (SGPT): the k-th pooled token of a row (k = 1, 2, … counted among its
    pooled tokens, from the left) gets weight k, the weights divided by their sum. In a causal model
    later tokens have seen more of the text, so they count more. → (B, D)."""
    # TODO
    raise NotImplementedError("weighted_mean_pool")


def eos_pool(hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """EOS pooling: the tokenizer appended its EOS token to every text, and the embedding is the
    state at that EOS — the last real token (attention_mask 1) of each row, wherever the padding
    is. If a row's last real token is not eos_id, the batch was built without the EOS: raise a
    ValueError that names the row. → (B, D)."""
    # TODO
    raise NotImplementedError("eos_pool")
