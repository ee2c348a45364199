"""Assignment 05 — masked next-token prediction (tutorial: tutorials/05_mntp.ipynb).

Grade with

    python -m pytest tutorials/assignments/test_a05_mntp.py

The grader checks your masking statistically (the rules and the 80/10/10 split) and your loss
against transformers' causal-LM loss, which shifts exactly as MNTP must.
"""

import torch

IGNORE = -100  # the label of positions without a loss (F.cross_entropy's default ignore_index)


def mask_tokens(ids: torch.Tensor, mask_token_id: int, special_ids: set, vocab_size: int, prob: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, T) → (inputs, labels), both (B, T).

    Select each position with probability `prob` — never a special token, never position 0 (no
    position −1 exists to predict it from). labels: the original token at selected positions,
    IGNORE elsewhere. inputs: a copy of ids where, of the selected positions, 80% become
    mask_token_id, 10% a random token in [0, vocab_size), and 10% stay unchanged (BERT's recipe,
    which LLM2Vec uses for LLaMA). Draw every random number from `generator`.
    """
    # TODO
    raise NotImplementedError("mask_tokens")


def mntp_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head) -> torch.Tensor:
    """hidden (B, T, D) from the bidirectional model, labels (B, T) from mask_tokens, lm_head a
    module mapping D → vocabulary logits. The mean cross-entropy over the labelled tokens, where
    the token at position i is predicted from the hidden state at position i − 1."""
    # TODO: shift, then (to save memory) apply lm_head only where there is a label
    raise NotImplementedError("mntp_loss")
