"""A worked solution of assignment 01, written from the stubs' docstrings alone (not l2v's code):
the grader must pass it, as it passes the library."""

import torch
import torch.nn.functional as F


def rms_norm(x, weight, eps):
    return weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def apply_rotary(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def attention(q, k, v, mask):
    n_rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)  # (B, H, T, d)
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (B, H, T, T)
    return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v


def swiglu(x, gate_w, up_w, down_w):
    return F.linear(F.silu(F.linear(x, gate_w)) * F.linear(x, up_w), down_w)


def decoder_block(x, weights, n_heads, n_kv_heads, eps, mask, cos, sin):
    B, T, D = x.shape
    w = weights
    h = rms_norm(x, w["input_layernorm.weight"], eps)
    q = F.linear(h, w["self_attn.q_proj.weight"]).view(B, T, n_heads, -1).transpose(1, 2)  # (B, H, T, d)
    k = F.linear(h, w["self_attn.k_proj.weight"]).view(B, T, n_kv_heads, -1).transpose(1, 2)  # (B, KV, T, d)
    v = F.linear(h, w["self_attn.v_proj.weight"]).view(B, T, n_kv_heads, -1).transpose(1, 2)  # (B, KV, T, d)
    y = attention(apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v, mask)  # (B, H, T, d)
    x = x + F.linear(y.transpose(1, 2).reshape(B, T, -1), w["self_attn.o_proj.weight"])  # (B, T, D)
    m = rms_norm(x, w["post_attention_layernorm.weight"], eps)
    return x + swiglu(m, w["mlp.gate_proj.weight"], w["mlp.up_proj.weight"], w["mlp.down_proj.weight"])
