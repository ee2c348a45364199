"""Assignment 04 — LoRA from scratch (tutorial: tutorials/04_lora.ipynb).

Write the LoRA layer and the function that puts it into a model. Grade with

    python -m pytest tutorials/assignments/test_a04_lora.py

The grader checks your layer against its definition and your whole adapted model against peft
(the reference LoRA library) with the same A and B.

            x
      ┌─────┴──────┐
   W (frozen)    A (r×in)
      │            │
      │          B (out×r)  × α/r
      └──── + ─────┘          h = W·x + (α/r)·B·A·x
"""

import torch
from torch import nn


class LoRALinear(nn.Module):
    """Wraps a bias-free nn.Linear `base`.

    Attributes the grader (and peft's file format) rely on:
      self.weight   the base's weight, the same Parameter (not a copy), frozen (requires_grad False)
      self.lora_A   nn.Linear(in_features, r, bias=False): initialised like nn.Linear (kaiming-uniform)
      self.lora_B   nn.Linear(r, out_features, bias=False): initialised to zeros, so training starts
                    exactly at the base model
      self.scaling  alpha / r
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        # TODO
        raise NotImplementedError("LoRALinear.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """W·x + scaling · B·A·x — or just W·x after merge()."""
        # TODO
        raise NotImplementedError("LoRALinear.forward")

    @torch.no_grad()
    def merge(self):
        """Fold the update into the weight (W ← W + scaling·B·A) so the layer costs no more than
        the base; forward must give the same result afterwards."""
        # TODO
        raise NotImplementedError("LoRALinear.merge")


def apply_lora(model: nn.Module, r: int, alpha: float, targets=("q_proj", "v_proj")) -> nn.Module:
    """Replace every nn.Linear child whose attribute name is in `targets` (anywhere in the model)
    by a LoRALinear around it; then freeze every parameter except the LoRA A and B matrices.
    Returns the model."""
    # TODO: model.named_modules() visits every module; setattr(parent, child_name, new) replaces a child
    raise NotImplementedError("apply_lora")
