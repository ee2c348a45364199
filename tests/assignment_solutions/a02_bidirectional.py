"""A worked solution of assignment 02, written from the stubs' docstrings alone."""

import torch


def attention_mask(padding_mask, causal):
    B, T = padding_mask.shape
    mask = padding_mask.bool()[:, None, None, :].expand(B, 1, T, T)  # keys must be real
    if causal:
        mask = mask & torch.ones(T, T, dtype=torch.bool).tril()
    return mask | torch.eye(T, dtype=torch.bool)


@torch.no_grad()
def layer_similarity(model, input_ids):
    _, causal = model(input_ids, causal=True, output_hidden_states=True)
    _, bidirectional = model(input_ids, causal=False, output_hidden_states=True)
    return torch.stack([torch.cosine_similarity(c[0], b[0], dim=-1) for c, b in zip(causal, bidirectional)])
