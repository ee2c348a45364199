"""Grader for assignment 01: your LLaMA pieces against transformers' own LLaMA code."""

import types

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig
from transformers.models.llama import modeling_llama as hf

from grading import expect_close, load

a01 = load("a01_llama_block")
CFG = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=2, rms_norm_eps=0.1, attn_implementation="eager")  # a large eps shows eps mistakes
B, T, D, H, KV, d = 2, 6, 64, 4, 2, 16
POINTS = {"test_rms_norm": 3, "test_apply_rotary": 5, "test_attention": 7, "test_swiglu": 3, "test_decoder_block": 7}


def cos_sin(T):
    x = torch.zeros(1, T, D)
    cos, sin = hf.LlamaRotaryEmbedding(CFG)(x, torch.arange(T)[None])  # (1, T, d) each
    return cos[0], sin[0]


def mask_table():
    """(B, 1, T, T) causal mask, second sequence left-padded by two; every position sees itself."""
    real = torch.tensor([[1] * T, [0, 0] + [1] * (T - 2)]).bool()
    causal = torch.ones(T, T).tril().bool()
    return (causal[None] & real[:, None, :] | torch.eye(T, dtype=torch.bool))[:, None]


def additive(mask):
    return torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)


def test_rms_norm():
    torch.manual_seed(0)
    x, w = torch.randn(B, T, D) * 3 + 1, torch.randn(D)
    ref = hf.LlamaRMSNorm(D, eps=0.1)
    ref.weight.data = w
    ms = x.pow(2).mean(-1, keepdim=True)
    expect_close(a01.rms_norm(x, w, 0.1), ref(x), "rms_norm", mistakes={
        "that is LayerNorm — RMSNorm does not subtract the mean (no centring, only scaling)":
            w * (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 0.1),
        "eps belongs inside the square root: x / sqrt(mean(x²) + eps)": w * x / (ms.sqrt() + 0.1),
        "the per-channel weight is missing": x / torch.sqrt(ms + 0.1),
        "the mean of x² is over the last dimension (the D channels of each token), keepdim=True":
            w * x / torch.sqrt(x.pow(2).mean(0, keepdim=True) + 0.1),
    })


def test_apply_rotary():
    torch.manual_seed(0)
    q, k = torch.randn(B, H, T, d), torch.randn(B, KV, T, d)
    cos, sin = cos_sin(T)
    ref_q, ref_k = hf.apply_rotary_pos_emb(q, k, cos[None], sin[None])
    x1, x2 = q.chunk(2, dim=-1)
    interleaved = torch.stack((-q[..., 1::2], q[..., ::2]), dim=-1).flatten(-2)
    expect_close(a01.apply_rotary(q, cos, sin), ref_q, "apply_rotary", mistakes={
        "rotate_half(x) is [−x₂, x₁] (minus on the second half, which moves to the front); yours rotates the "
        "other way": q * cos + torch.cat((x2, -x1), -1) * sin,
        "LLaMA pairs dimension k with k + d/2 (rotate half), not neighbours 2k, 2k+1 (GPT-J's layout)":
            q * cos + interleaved * sin,
        "rotate_half must swap the halves: [−x₂, x₁], not [−x₁, x₂]": q * cos + torch.cat((-x1, x2), -1) * sin,
    })
    expect_close(a01.apply_rotary(k, cos, sin), ref_k, "apply_rotary on keys (fewer heads)")


def test_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(B, H, T, d), torch.randn(B, KV, T, d), torch.randn(B, KV, T, d)
    mask = mask_table()
    module = types.SimpleNamespace(num_key_value_groups=H // KV, training=False)
    ref, _ = hf.eager_attention_forward(module, q, k, v, additive(mask), scaling=d**-0.5)
    ref = ref.transpose(1, 2)  # transformers returns (B, T, H, d)

    def variant(scale=d**-0.5, tile=False, m=mask):
        kk = k.repeat(1, H // KV, 1, 1) if tile else k.repeat_interleave(H // KV, 1)
        vv = v.repeat(1, H // KV, 1, 1) if tile else v.repeat_interleave(H // KV, 1)
        s = (q @ kk.transpose(-2, -1)) * scale
        return s.masked_fill(~m, float("-inf")).softmax(-1) @ vv

    expect_close(a01.attention(q, k, v, mask), ref, "attention", mistakes={
        "scores are divided by √d (the head width), not by d": variant(scale=1 / d),
        "scores must be scaled by 1/√d": variant(scale=1.0),
        "key/value head g serves query heads g·H/KV … (g+1)·H/KV − 1: use repeat_interleave along the head "
        "dimension, not repeat (which tiles)": variant(tile=True),
        "mask rows are queries and columns are keys — yours reads it transposed": variant(m=mask.transpose(-2, -1)),
        "the mask is ignored: masked positions need a score of −inf before the softmax":
            variant(m=torch.ones_like(mask)),
        "the softmax runs over the keys (the last dimension: each query's weights sum to 1), not over the "
        "queries": (q @ k.repeat_interleave(H // KV, 1).transpose(-2, -1) * d**-0.5)
            .masked_fill(~mask, float("-inf")).softmax(-2) @ v.repeat_interleave(H // KV, 1),
    })


def test_swiglu():
    torch.manual_seed(0)
    mlp = hf.LlamaMLP(CFG)
    x = torch.randn(B, T, D)
    gw, uw, dw = mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight
    expect_close(a01.swiglu(x, gw, uw, dw), mlp(x), "swiglu", mistakes={
        "silu goes on the gate projection, not on the up projection":
            F.linear(F.linear(x, gw) * F.silu(F.linear(x, uw)), dw),
        "LLaMA's activation is SiLU (x·sigmoid(x)), not ReLU": F.linear(F.relu(F.linear(x, gw)) * F.linear(x, uw), dw),
    })


def test_decoder_block():
    torch.manual_seed(0)
    layer = hf.LlamaDecoderLayer(CFG, layer_idx=0).eval()
    for p in layer.parameters():  # norms away from 1, so a missing norm weight shows
        torch.nn.init.normal_(p, mean=0.5 if p.ndim == 1 else 0.0, std=0.1)
    x = torch.randn(B, T, D)
    mask = mask_table()
    cos, sin = cos_sin(T)
    with torch.no_grad():
        ref = layer(x, attention_mask=additive(mask), position_embeddings=(cos[None], sin[None]))
        ref = ref[0] if isinstance(ref, tuple) else ref
        weights = {name: p.detach().clone() for name, p in layer.named_parameters()}
        ours = a01.decoder_block(x, weights, H, KV, 0.1, mask, cos, sin)
        no_rotary = layer(x, attention_mask=additive(mask), position_embeddings=(torch.ones(1, T, d), torch.zeros(1, T, d)))
        attn = layer.self_attn(layer.input_layernorm(x), attention_mask=additive(mask),
                               position_embeddings=(cos[None], sin[None]))[0]
        no_residual = layer.mlp(layer.post_attention_layernorm(attn))
        swapped = {**weights, "input_layernorm.weight": weights["post_attention_layernorm.weight"],
                   "post_attention_layernorm.weight": weights["input_layernorm.weight"]}
        layer_swapped = hf.LlamaDecoderLayer(CFG, layer_idx=0).eval()
        layer_swapped.load_state_dict(swapped)
        norms_swapped = layer_swapped(x, attention_mask=additive(mask), position_embeddings=(cos[None], sin[None]))
    expect_close(ours, ref, "decoder_block", atol=1e-4, mistakes={
        "q and k must be rotated (apply_rotary) before the scores": no_rotary[0] if isinstance(no_rotary, tuple)
        else no_rotary,
        "both halves add their output to their input (residual connections: h = x + …, out = h + …)": no_residual,
        "input_layernorm comes before attention, post_attention_layernorm before the MLP (yours are swapped)":
            norms_swapped[0] if isinstance(norms_swapped, tuple) else norms_swapped,
    })
