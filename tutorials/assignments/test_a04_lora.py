"""Grader for assignment 04: your LoRA layer against its definition, your adapted model against peft."""

import copy

import peft
import pytest
import torch
import transformers
from torch import nn

from grading import expect_close, load, require

a04 = load("a04_lora")
POINTS = {"test_initialisation": 4, "test_forward_and_gradients": 6, "test_merge": 3, "test_apply_lora_matches_peft": 7}


def make_layer(seed=0):
    torch.manual_seed(seed)
    base = nn.Linear(32, 24, bias=False)
    return base, a04.LoRALinear(base, r=4, alpha=8)


def test_initialisation():
    base, layer = make_layer()
    require(getattr(layer, "weight", None) is base.weight,
        "self.weight must be the base layer's own Parameter (self.weight = base.weight), not a copy")
    require(not layer.weight.requires_grad, "the base weight is frozen: set requires_grad to False")
    A, B = layer.lora_A.weight, layer.lora_B.weight
    require(tuple(A.shape) == (4, 32), f"lora_A maps in → r: its weight is (r, in) = (4, 32), got {tuple(A.shape)}")
    require(tuple(B.shape) == (24, 4), f"lora_B maps r → out: its weight is (out, r) = (24, 4), got {tuple(B.shape)}")
    require(layer.scaling == pytest.approx(2.0), f"scaling is alpha / r = 8 / 4 = 2, got {layer.scaling}")
    require(torch.all(B == 0), "B starts at zero, so the adapted layer starts exactly as the base layer")
    require(A.abs().sum() > 0, "A starts random (kaiming-uniform, like nn.Linear); with A = B = 0 nothing can learn")
    require(A.abs().max() <= 32 ** -0.5 + 1e-6 and A.abs().max() > 0.5 * 32 ** -0.5,
            "A is initialised like nn.Linear: uniform in ±1/√in (kaiming-uniform with a = √5)")
    x = torch.randn(5, 32)
    expect_close(layer(x), base(x), "at initialisation the LoRA layer equals the base layer")


def test_forward_and_gradients():
    base, layer = make_layer()
    torch.nn.init.normal_(layer.lora_B.weight, std=0.5)
    x = torch.randn(5, 32)
    W, A, B = base.weight, layer.lora_A.weight, layer.lora_B.weight
    expect_close(layer(x), x @ W.T + 2.0 * (x @ A.T @ B.T), "forward", mistakes={
        "the update is scaled by alpha / r": x @ W.T + x @ A.T @ B.T,
        "the scaling is alpha / r, not r / alpha": x @ W.T + 0.5 * (x @ A.T @ B.T),
        "the scaling is alpha / r, not alpha": x @ W.T + 8.0 * (x @ A.T @ B.T),
    })
    layer(x).pow(2).sum().backward()
    require(base.weight.grad is None, "the base weight received a gradient: it must stay frozen")
    require(A.grad is not None and B.grad is not None, "A and B must receive gradients")


def test_merge():
    base, layer = make_layer()
    torch.nn.init.normal_(layer.lora_B.weight, std=0.5)
    x = torch.randn(5, 32)
    W0 = base.weight.detach().clone()
    before = layer(x).detach()
    delta = 2.0 * layer.lora_B.weight @ layer.lora_A.weight
    layer.merge()
    expect_close(layer.weight, W0 + delta, "the merged weight (W + scaling·B·A)")
    expect_close(layer(x), before, "forward after merge()", mistakes={
        "after merge() the update is already in W: forward must not add the LoRA branch again":
            before + x @ delta.T,
    })


def test_apply_lora_matches_peft():
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    ours = a04.apply_lora(copy.deepcopy(hf), r=4, alpha=8, targets=("q_proj", "v_proj"))
    theirs = peft.get_peft_model(copy.deepcopy(hf), peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                                   target_modules=["q_proj", "v_proj"]))
    wrapped = {name: m for name, m in ours.named_modules() if hasattr(m, "lora_A")}
    expected = {name.removeprefix("base_model.model.") for name, m in theirs.named_modules()
                if isinstance(m, peft.tuners.lora.LoraLayer)}
    require(set(wrapped) == expected, f"wrapped modules differ from peft's: yours {sorted(wrapped)[:4]}…, "
            f"expected {sorted(expected)[:4]}… (every q_proj and v_proj, nothing else)")
    trainable = {name for name, p in ours.named_parameters() if p.requires_grad}
    require(trainable and all("lora_A" in n or "lora_B" in n for n in trainable),
        f"only LoRA's A and B may train; also trainable: {sorted(n for n in trainable if 'lora_' not in n)[:3]}")
    n_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    n_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    require(n_ours == n_theirs, f"{n_ours} trainable parameters, peft has {n_theirs}")
    g = torch.Generator().manual_seed(1)
    for name, m in wrapped.items():  # the same non-zero A and B in both
        peft_module = theirs.get_submodule("base_model.model." + name)
        for which in ("lora_A", "lora_B"):
            value = torch.randn(getattr(m, which).weight.shape, generator=g) * 0.1
            getattr(m, which).weight.data.copy_(value)
            getattr(peft_module, which)["default"].weight.data.copy_(value)
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        expect_close(ours(ids).logits, theirs(ids).logits, "logits of your adapted model vs peft's")
