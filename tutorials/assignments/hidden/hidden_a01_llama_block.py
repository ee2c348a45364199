"""Hidden checks for assignment 01 (the instructor's; not in the hand-out): other shapes than the
visible grader's, so an answer fitted to those shapes fails."""

import types

import torch
from transformers.models.llama import modeling_llama as hf

from grading import draw, expect_close, load

a01 = load("a01_llama_block")
POINTS = {"test_multi_query_attention": 2, "test_rms_norm_on_a_matrix": 1}


def test_multi_query_attention():
    g = draw(3)
    B, H, T, d = 3, 6, 5, 8
    q, k, v = (torch.randn(B, h, T, d, generator=g) for h in (H, 1, 1))
    mask = torch.ones(B, 1, T, T, dtype=torch.bool).tril()
    module = types.SimpleNamespace(num_key_value_groups=H, training=False)
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    ref, _ = hf.eager_attention_forward(module, q, k, v, additive, scaling=d**-0.5)
    expect_close(a01.attention(q, k, v, mask), ref.transpose(1, 2), "attention with one key/value head (MQA)")


def test_rms_norm_on_a_matrix():
    g = draw(4)
    x, w = torch.randn(7, 12, generator=g) * 5, torch.rand(12, generator=g)
    ref = hf.LlamaRMSNorm(12, eps=1e-6)
    ref.weight.data = w
    expect_close(a01.rms_norm(x, w, 1e-6), ref(x), "rms_norm on a (N, D) input")
