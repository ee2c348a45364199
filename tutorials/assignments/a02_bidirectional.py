"""Assignment 02 — causal vs bidirectional attention (tutorial: tutorials/02_causal_vs_bidirectional.ipynb).

Fill in the two functions. Grade with

    python -m pytest tutorials/assignments/test_a02_bidirectional.py

The grader runs an l2v model with *your* mask in place of the library's and compares every hidden
state with transformers, causal and bidirectional, padded and unpadded.
"""

import torch


def attention_mask(padding_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, T) padding mask (1 = real token, 0 = padding) → (B, 1, T, T) bool, True where query
    position i (row) may attend to key position j (column).

    - a key must be a real token;
    - causal: only keys j ≤ i; bidirectional (LLM2Vec step 1): every real key;
    - every position may also attend to itself — also padding rows, which would otherwise have
      nothing to attend to: a softmax over nothing but −inf is NaN, and NaN spreads.
    """
    # TODO
    raise NotImplementedError("attention_mask")


def layer_similarity(model, input_ids: torch.Tensor) -> torch.Tensor:
    """The paper's per-layer analysis for one sequence (input_ids (1, T)): run the model causally
    and bidirectionally — `model(input_ids, causal=..., output_hidden_states=True)` returns
    (last hidden, a tuple of L + 1 hidden states (1, T, D), embeddings first) — and return the
    cosine similarity of the two states of each token at each layer: (L + 1, T)."""
    # TODO: no gradients needed (torch.no_grad())
    raise NotImplementedError("layer_similarity")
