"""LoRA (Hu et al., 2021), by hand: a frozen weight plus a trainable low-rank update.

           x (…, in)
           │
     ┌─────┴───────────────┐
     │                     │ dropout
     ▼                     ▼
  W (out×in)            A (r×in)      A: kaiming-uniform, B: zeros, so training starts
  frozen                   │          exactly at the base model
     │                     ▼
     │                  B (out×r)
     │                     │ × α/r
     └────────► + ◄────────┘
                │
      h = W·x + (α/r)·B·A·x          merge():  W ← W + (α/r)·B·A   (then no extra cost)

Only A and B train: for SmolLM2 with r = 16 on all seven projections that is 4.9M of 139M
parameters. A and B (and so AdamW's state) stay fp32 even when W is bf16.

`LoRALinear.forward` is the expression above, in a few lines. `FastLoRALinear` (below it) computes
the same in training with a hand-written backward that keeps far less memory; training selects it
with `apply_lora(..., fast=True)`, and tests/test_lora.py holds it equal to the plain one.

Adapters are saved in PEFT's format, so l2v and peft read each other's: formats/peft.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .runtime.precision import UPCAST_CHUNK, UpcastLinear, linear_sharing, upcast_linear

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    """An nn.Linear with a LoRA branch. It keeps the base's `weight` (and `bias`, if any) under the
    same names, so the model's own parameter names (`...q_proj.weight`) do not change."""

    def __init__(self, base: nn.Linear, r: int = 16, alpha: float = 32, dropout: float = 0.05):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight.requires_grad_(False)  # the frozen W (out×in), shared with the base layer
        # Qwen2's q/k/v biases: frozen and kept as they are, like W. LoRA adapts W only, as peft does
        # with bias="none", so the adapter files carry no bias and keep PEFT's format.
        self.bias = None if base.bias is None else base.bias.requires_grad_(False)
        self.upcast = isinstance(base, UpcastLinear)  # bf16 W computed in fp32 (a CPU without native bf16)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        device = base.weight.device
        self.lora_A = nn.Linear(self.in_features, r, bias=False, device=device, dtype=torch.float32)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=device, dtype=torch.float32)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout)
        self.merged = False

    def forward(self, x):
        out = self.base(x)
        if self.merged:
            return out
        update = self.lora_B(self.lora_A(self.dropout(x.to(self.lora_A.weight.dtype))))  # the branch in fp32
        return out + (update * self.scaling).to(out.dtype)

    def base(self, x):
        """W·x (+ bias): the frozen layer alone."""
        return upcast_linear(x, self.weight, self.bias) if self.upcast else F.linear(x, self.weight, self.bias)

    def delta(self) -> torch.Tensor:
        """(α/r)·B·A, the change LoRA makes to W (out×in), in fp32."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    @torch.no_grad()
    def merge(self):
        if not self.merged:
            self.weight.copy_((self.weight.float() + self.delta()).to(self.weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self):
        if self.merged:
            self.weight.copy_((self.weight.float() - self.delta()).to(self.weight.dtype))
            self.merged = False

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, alpha={self.alpha}"


# ---------------------------------------------------------------- the fast path, for training
#
# With dropout on, autograd keeps what `lora_A` receives — an fp32 copy of the dropped-out input
# of every projection — for its backward pass: more than half of all activation memory in LoRA
# training. FastLoRALinear keeps only the dropout mask (1 byte an element) and masks x again in
# backward; drawing the mask as random bits rather than with torch.rand also makes a CPU training
# step faster. `apply_lora(..., fast=True)` selects it; training does (train.prepare_model),
# loading an adapter for inference does not. Tested equal to LoRALinear in tests/test_lora.py,
# given the same mask. The two draw *different* masks from the same RNG state (random bits here,
# nn.Dropout's Bernoulli there): either is a valid dropout, and each draws the same masks from the
# same RNG state with and without autograd, which is what GradCache's two passes need.
#
# The frozen W·x is inside the same autograd Function, so x's gradient is one buffer: LoRA's part
# is written first and W's part is added into it (addmm_). Split in two, autograd would hold W's
# part, LoRA's part and their sum at once — three x-sized tensors at the MLP's down_proj, the
# moment a checkpointed step peaks (measured in tests/test_plan.py).


class FastLoRALinear(LoRALinear):
    """LoRALinear whose training-mode forward with dropout runs `_LoRALinearFunction`: same maths,
    less memory."""

    def forward(self, x):
        p = self.dropout.p
        if self.merged or not self.training or p == 0:
            return super().forward(x)  # no dropout, so autograd keeps no dropped-out copy of x
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else self.lora_A.weight.dtype
        return _LoRALinearFunction.apply(x, self.lora_A.weight, self.lora_B.weight, self, p, dtype)

    def add_base_grad(self, grad_x: torch.Tensor, grad: torch.Tensor):
        """grad_x += grad·W in place (the frozen layer's share of x's gradient); bf16 W upcast a
        block of rows at a time where the base computes in fp32 (precision.UpcastLinear)."""
        g, out = grad.reshape(-1, self.out_features), grad_x.view(-1, self.in_features)
        rows = max(1, UPCAST_CHUNK // self.in_features) if self.upcast else self.out_features
        for i in range(0, self.out_features, rows):
            out.addmm_(g[:, i : i + rows].to(out.dtype), self.weight[i : i + rows].to(out.dtype))


class _LoRALinearFunction(torch.autograd.Function):
    """W·x (+ bias) + (α/r)·B·A·dropout(x) for a frozen W, the LoRA branch in fp32 (or autocast's
    dtype), written out to save memory and time: only the dropout mask is kept for backward
    (1 byte an element; autograd would keep an fp32 copy of the dropped-out x, ~6 bytes with its
    mask), and x is masked again in the backward pass. Both constant factors, dropout's 1/(1 − p)
    and LoRA's α/r, are applied to the r-wide u rather than to the in-wide x."""

    @staticmethod
    def forward(ctx, x, A, B, layer: FastLoRALinear, p: float, dtype: torch.dtype):
        keep, p = dropout_keep_mask(x, p)  # the dropout mask, as a boolean
        ctx.scale, ctx.dtype, ctx.layer = layer.scaling / (1 - p), dtype, layer
        out = layer.base(x)  # W·x as the plain layer computes it (autocast's dtype, or upcast to fp32)
        with torch.autocast(x.device.type, enabled=False):  # dtype is already autocast's choice, if any
            # torch.where, not x * keep: a float × bool product first copies the mask into floats
            u = (torch.where(keep, x.to(dtype), 0.0) @ A.to(dtype).T) * ctx.scale  # (…, r)
            ctx.save_for_backward(x, keep, A, B, u)
            return out.add_(u @ B.to(dtype).T)  # in place: no second out-sized tensor

    @staticmethod
    def backward(ctx, grad):
        x, keep, A, B, u = ctx.saved_tensors
        a, b, g = A.to(ctx.dtype), B.to(ctx.dtype), grad.to(ctx.dtype)
        grad_B = g.reshape(-1, g.shape[-1]).T @ u.reshape(-1, u.shape[-1])  # (out, r)
        grad_u = (g @ b) * ctx.scale  # (…, r)
        dropped = torch.where(keep, x.to(ctx.dtype), 0.0)  # recomputed instead of kept
        grad_A = grad_u.reshape(-1, grad_u.shape[-1]).T @ dropped.reshape(-1, dropped.shape[-1])  # (r, in)
        del dropped  # x-sized: gone before grad_x, the next x-sized tensor, is made
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_u @ a).masked_fill_(keep.logical_not(), 0.0).to(grad.dtype)  # LoRA's share
            ctx.layer.add_base_grad(grad_x, grad)  # + grad·W, into the same buffer
            grad_x = grad_x.to(x.dtype)
        return grad_x, grad_A.to(A.dtype), grad_B.to(B.dtype), None, None, None


def dropout_keep_mask(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """A boolean mask shaped like x, True with probability 1 − p → (mask, the p it used).

    On CPU, torch.rand is a visible share of a LoRA training step; 16 random bits per element, drawn
    64 at a time, cost far less. p is then used to 1/65536 (0.05 → 0.0500031), and the dropout's
    1/(1 − p) uses the same value, so the expectation stays exact."""
    if x.device.type != "cpu":  # bernoulli straight into booleans: no fp32 rand_like of x's size
        return torch.empty(x.shape, dtype=torch.bool, device=x.device).bernoulli_(1 - p), p
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    r = words.view(torch.int16)[:n].view(x.shape)  # uniform on [−32768, 32767]
    threshold = round(p * 65536)
    return r >= threshold - 32768, threshold / 65536


# ---------------------------------------------------------------- a model's LoRA layers


def lora_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every LoRA layer of the model by its path: l2v's, or one handed to apply_lora (any module
    with `lora_A` and `lora_B` linear layers, which is what PEFT's files store)."""
    return {name: m for name, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "lora_B")}


def apply_lora(model: nn.Module, r: int = 16, alpha: float = 32, dropout: float = 0.05,
               targets: Iterable[str] = DEFAULT_TARGETS, fast: bool = False, layer=None) -> nn.Module:
    """Wrap every nn.Linear whose name ends in one of `targets`; freeze everything but LoRA.
    fast: FastLoRALinear layers (training) rather than LoRALinear; the same parameters and files.
    layer: your own, layer(base, r, alpha, dropout) → a module with `lora_A` and `lora_B` (train.Pieces)."""
    targets = tuple(targets)
    layer = layer or (FastLoRALinear if fast else LoRALinear)
    replaced = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child_name in targets:
                setattr(module, child_name, layer(child, r, alpha, dropout))
                replaced += 1
    if not replaced:
        raise ValueError(f"no nn.Linear named {', '.join(targets)} in the model")
    mark_only_lora_trainable(model)
    model.lora_config = dict(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets))
    return model


def mark_only_lora_trainable(model: nn.Module):
    for name, p in model.named_parameters():
        p.requires_grad = ".lora_A." in name or ".lora_B." in name


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters() if ".lora_A." in name or ".lora_B." in name]


def trainable_summary(model: nn.Module) -> str:
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its weight and put plain nn.Linear layers back."""
    other = {path: type(m).__name__ for path, m in lora_modules(model).items() if not isinstance(m, LoRALinear)}
    if other:  # a LoRA layer handed to apply_lora: l2v does not know how it merges
        path = min(other)
        raise TypeError(f"merge_lora merges l2v's LoRALinear; {path} is a {other[path]}")
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                child.merge()
                setattr(module, child_name, linear_sharing(UpcastLinear if child.upcast else nn.Linear, child))
    if hasattr(model, "lora_config"):
        del model.lora_config
    for p in model.parameters():
        p.requires_grad = True
    return model
