"""Assignment 01 — a LLaMA block from scratch (tutorial: tutorials/01_llama_block.ipynb).

Fill in the five functions below. Each may use plain torch (no l2v, no transformers). Grade with

    python -m pytest tutorials/assignments/test_a01_llama_block.py

The grader compares your functions with Hugging Face transformers' own LLaMA code on a tiny
random model, and tells you which well-known mistake your answer looks like when it is wrong.
Shapes: B batch, T tokens, D hidden, H query heads, KV key/value heads, d head width.
"""

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x (…, D) divided by its root mean square over the last dimension (eps inside the root),
    times the per-channel weight (D,)."""
    # TODO: one or two lines
    raise NotImplementedError("rms_norm")


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding. x (B, H, T, d); cos, sin (T, d), each the same angle table written
    twice ([θ₀ … θ_{d/2−1}, θ₀ … θ_{d/2−1}]). LLaMA pairs dimension k with dimension k + d/2 (the
    "rotate half" layout): out = x·cos + rotate_half(x)·sin, where rotate_half(x) = [−x₂, x₁]."""
    # TODO
    raise NotImplementedError("apply_rotary")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Grouped-query attention. q (B, H, T, d); k, v (B, KV, T, d) with H a multiple of KV: key/value
    head g serves query heads g·H/KV … (g+1)·H/KV − 1. mask (B, 1, T, T) bool, True = may attend
    (row = query position, column = key position). → (B, H, T, d): softmax(q·kᵀ/√d, masked)·v."""
    # TODO
    raise NotImplementedError("attention")


def swiglu(x: torch.Tensor, gate_w: torch.Tensor, up_w: torch.Tensor, down_w: torch.Tensor) -> torch.Tensor:
    """LLaMA's MLP: down(silu(gate(x)) ⊙ up(x)). Weights are nn.Linear-style (out × in), no biases."""
    # TODO
    raise NotImplementedError("swiglu")


def decoder_block(x: torch.Tensor, weights: dict, n_heads: int, n_kv_heads: int, eps: float,
                  mask: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """One pre-norm LLaMA block, x (B, T, D) → (B, T, D), from your four functions above.
    `weights` has Hugging Face's names: "input_layernorm.weight", "self_attn.q_proj.weight",
    "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
    "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight".

        h = x + o_proj(attention(rotary(q), rotary(k), v))   with q, k, v from rms_norm(x)
        out = h + swiglu(rms_norm(h))
    """
    # TODO: project, split into heads (view + transpose), rotate q and k, attend, merge heads, add;
    #       then the MLP half. Write the shape after every reshape in a comment.
    raise NotImplementedError("decoder_block")
