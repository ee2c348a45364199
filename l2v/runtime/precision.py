"""Which number format does the arithmetic: bf16 where the hardware has it, fp32 where it does not.

A 7B model in bf16 takes half the memory it takes in fp32, which is what lets it fit a 24 GB
machine. But a CPU without native bf16 (AVX2 only, no AVX-512 BF16 or AMX) emulates bf16 matrix
multiplies, orders of magnitude slower than fp32 ones (docs/scaling.md has the measurement). So
on such a CPU the weights stay bf16 in memory and every matrix multiply runs in fp32: each weight
is upcast at the moment it is used, a block of rows at a time, so only 8 MB of fp32 weight exists
at once (`UpcastLinear`) — as fast as fp32 weights, and faster than upcasting a whole weight first.
The residual stream is then fp32 too (the embedding output is upcast), so attention and the norms
run in fp32 as well.

    native_bf16("cpu")        the decision; L2V_NATIVE_BF16=0 (or 1) overrides it, which is how
                              the fp32 path is tested on a CPU that has native bf16
    upcast_compute(model)     bf16 storage, fp32 arithmetic (what load_model does on such CPUs)
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

NATIVE_BF16_ENV = "L2V_NATIVE_BF16"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # --dtype's names


def native_bf16(device="cpu") -> bool:
    """Whether bf16 matrix multiplies are fast on this device: CUDA, or a CPU with AVX-512 BF16.
    The environment variable L2V_NATIVE_BF16 (1 or 0) overrides the check on CPUs."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    forced = os.environ.get(NATIVE_BF16_ENV)
    if forced is not None:
        if forced not in ("0", "1"):
            raise ValueError(f"{NATIVE_BF16_ENV} must be 0 or 1, not {forced!r}")
        return forced == "1"
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return device.type == "cpu" and check is not None and bool(check())


UPCAST_CHUNK = 2**21  # weight elements upcast at a time: 8 MB of fp32, hot in cache when used


class _UpcastMatmul(torch.autograd.Function):
    """x @ Wᵀ in fp32 with W stored in bf16, a block of W's rows at a time: each block is upcast
    right before its multiply (measured faster than upcasting the whole weight first, and the
    fp32 transient is 8 MB instead of up to a whole LM head). Autograd on `F.linear(x, W.float())`
    would keep an fp32 copy of every weight for the backward pass (the model again, in fp32);
    this keeps the bf16 W and upcasts it again in backward."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight)
        ctx.rows = rows = max(1, UPCAST_CHUNK // weight.shape[1])
        with torch.autocast(x.device.type, enabled=False):  # upcast because bf16 is slow here
            parts = [F.linear(x, weight[i : i + rows].float()) for i in range(0, weight.shape[0], rows)]
        return torch.cat(parts, dim=-1)  # (..., out)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            for i in range(0, weight.shape[0], ctx.rows):  # Σ over row blocks of grad[..., block] @ W[block]
                part = grad[..., i : i + ctx.rows] @ weight[i : i + ctx.rows].float()  # (..., in)
                grad_x = part if grad_x is None else grad_x.add_(part)
        if ctx.needs_input_grad[1]:  # a trainable base weight (not LoRA training, where W is frozen)
            grad_w = (grad.reshape(-1, grad.shape[-1]).T @ x.reshape(-1, x.shape[-1])).to(weight.dtype)
        return grad_x, grad_w


def upcast_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear in fp32 for a bf16 weight: fp32 input, fp32 output."""
    y = _UpcastMatmul.apply(x.float(), weight)
    return y if bias is None else y + bias.float()


class UpcastLinear(nn.Linear):
    """nn.Linear whose bf16 weight is upcast to fp32 as it is used."""

    def forward(self, x):
        return upcast_linear(x, self.weight, self.bias)


def linear_sharing(cls: type[nn.Linear], layer: nn.Module) -> nn.Linear:
    """A new `cls` layer holding `layer`'s own weight and bias Parameters: nothing is copied, and
    whatever refers to them (an optimizer, a tied embedding) still does."""
    new = cls(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
    new.weight = layer.weight
    if layer.bias is not None:
        new.bias = layer.bias
    return new


def _fp32_output(module, inputs, output):
    return output.float()


def upcast_compute(model: nn.Module) -> nn.Module:
    """Keep the weights' storage, do the arithmetic in fp32: every bf16 nn.Linear is replaced by an
    UpcastLinear holding the same Parameters (so the same names), and the embedding output is
    upcast, so the residual stream, attention and norms are fp32. The model's LMHead does more than
    a linear (Gemma-2's soft-capping), so it is kept and told instead: its `upcast` flag. Call
    before apply_lora (LoRALinear keeps the upcast of the layer it wraps)."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if not isinstance(child, (nn.Linear, nn.Embedding)) or child.weight.dtype != torch.bfloat16:
                continue
            if isinstance(child, nn.Embedding):
                child.register_forward_hook(_fp32_output)
            elif type(child) is nn.Linear:
                setattr(module, name, linear_sharing(UpcastLinear, child))
            elif hasattr(child, "upcast"):  # the model's LMHead: reads the flag in its own forward
                child.upcast = True
    model.upcast_compute = True
    return model


def warn_fp16_under_bf16_autocast(model: nn.Module, where: str):
    """fp16 weights under bf16 autocast: matmuls come out bf16, and fp16 + bf16 promotes to fp32,
    so the residual stream silently becomes fp32 (twice the activation memory). Warn, keep going."""
    if any(p.dtype == torch.float16 for p in model.parameters()):
        warnings.warn(f"{where}: fp16 weights under bf16 autocast make the residual stream fp32 "
                      f"(fp16 + bf16 promotes); load the model with --dtype bfloat16 instead", stacklevel=3)
