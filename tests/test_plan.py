"""Issue 9: the memory planner against what autograd really keeps, measured on CPU."""

import pytest
import torch

from l2v.config import ModelConfig
from l2v.lora import apply_lora, lora_parameters
from l2v.model import Transformer
from l2v.plan import MODEL_SHAPES, count_lora_parameters, count_parameters, format_plan, plan


def saved_activation_bytes(model, ids, *inputs) -> int:
    """Bytes of the tensors autograd saves for backward during one forward, parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in params:
            seen[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(ids, *inputs)
    return sum(seen.values())


CASES = [  # hidden, mlp, heads, kv heads, layers, sequences, length, LoRA dropout, attention dropout
    (192, 512, 6, 2, 3, 4, 48, 0.0, 0.0),
    (128, 384, 4, 4, 4, 4, 64, 0.05, 0.0),
    (256, 640, 8, 2, 2, 4, 32, 0.05, 0.3),
]


@pytest.mark.parametrize("case", CASES, ids=["gqa-no-dropout", "mha-lora-dropout", "simcse-attention-dropout"])
def test_activation_estimate_matches_measured(case):
    h, f, H, KV, L, B, T, drop, attn_drop = case
    cfg = ModelConfig(vocab_size=300, hidden_size=h, intermediate_size=f, num_hidden_layers=L, num_attention_heads=H,
                      num_key_value_heads=KV, attention_dropout=attn_drop)
    model = apply_lora(Transformer(cfg, causal=False), r=16, dropout=drop, fast=True).train()  # training's path
    measured = saved_activation_bytes(model, torch.randint(0, 300, (B, T)))
    est = plan(cfg, stage="mntp", batch_size=B, max_length=T, dtype="float32", lora_dropout=drop,
               attention_dropout=attn_drop, device="cpu")
    assert est.activations == pytest.approx(measured, rel=0.10)


def test_checkpointing_keeps_block_inputs():
    cfg = ModelConfig(vocab_size=300, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2)
    model = apply_lora(Transformer(cfg, causal=False), r=16, fast=True).train()
    model.gradient_checkpointing = True
    B, T = 4, 64
    measured = saved_activation_bytes(model, torch.randint(0, 300, (B, T)))
    block_inputs = B * T * cfg.num_hidden_layers * cfg.hidden_size * 4
    assert block_inputs <= measured <= 1.4 * block_inputs
    est = plan(cfg, stage="mntp", batch_size=B, max_length=T, dtype="float32", device="cpu")
    assert est.activations_checkpointed < est.activations / 2


def test_parameter_counts_match_the_model():
    for name in ("smollm2-135m", "qwen2.5-0.5b", "qwen3-0.6b", "gemma-2-2b"):
        cfg = ModelConfig(**MODEL_SHAPES[name])
        with torch.device("meta"):
            model = Transformer(cfg)
        assert count_parameters(cfg) == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        apply_lora(model, r=16)
        assert count_lora_parameters(cfg, 16) == sum(p.numel() for p in lora_parameters(model))


def test_7b_presets_and_report():
    cfg = ModelConfig(**MODEL_SHAPES["mistral-7b"])
    p = plan(cfg, stage="mntp", batch_size=32, max_length=512)
    assert 13.0e9 < p.weights < 15.0e9  # 7.2B parameters in bf16
    assert p.total(checkpointing=True) < 40e9 < p.total(checkpointing=False)
    text = format_plan("mistral-7b", p, stage="mntp", batch_size=32, max_length=512, dtype="bfloat16")
    assert "with checkpointing" in text and "80 GB" in text
    with pytest.raises(ValueError, match="unknown stage"):
        plan(cfg, stage="pretraining", batch_size=1, max_length=8)


# Published sizes (the model cards): Qwen2.5-0.5B 0.49B, -7B 7.61B; Qwen3-0.6B 0.6B; Gemma-2-2B 2.61B, -9B 9.24B.
@pytest.mark.parametrize("name, billions", [("qwen2.5-0.5b", 0.494), ("qwen2.5-7b", 7.62), ("qwen3-0.6b", 0.596),
                                            ("gemma-2-2b", 2.614), ("gemma-2-9b", 9.242)])
def test_family_presets_have_the_published_sizes(name, billions):
    assert count_parameters(ModelConfig(**MODEL_SHAPES[name])) / 1e9 == pytest.approx(billions, rel=0.005)


def test_soft_capped_attention_estimate_matches_measured():
    """Gemma-2's attention takes the math path and keeps its T×T tensors; the estimate says so."""
    cfg = ModelConfig(model_type="gemma2", vocab_size=300, hidden_size=128, intermediate_size=384,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                      hidden_act="gelu_pytorch_tanh", sliding_window=16, layer_types=["sliding_attention", "full_attention"],
                      attn_logit_softcapping=50.0, final_logit_softcapping=30.0, query_pre_attn_scalar=32)
    model = apply_lora(Transformer(cfg, causal=False), r=16, dropout=0.0).train()
    B, T = 4, 64
    measured = saved_activation_bytes(model, torch.randint(0, 300, (B, T)))
    est = plan(cfg, stage="mntp", batch_size=B, max_length=T, dtype="float32", lora_dropout=0.0, device="cuda")
    assert est.activations == pytest.approx(measured, rel=0.10)


@pytest.mark.parametrize("kv_heads", [2, 6], ids=["gqa", "mha"])
def test_padded_batches_count_kv_expanded_to_all_heads(kv_heads):
    """Issue 14: a padded batch needs a mask, and with a mask K/V reach SDPA expanded to all heads."""
    cfg = ModelConfig(vocab_size=300, hidden_size=192, intermediate_size=512, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=kv_heads)
    model = apply_lora(Transformer(cfg, causal=False), r=16, dropout=0.0).train()
    B, T = 4, 48
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1:, :12] = 0  # left padding
    measured = saved_activation_bytes(model, torch.randint(0, 300, (B, T)), mask)
    est = plan(cfg, stage="simcse", batch_size=B // 2, max_length=T, dtype="float32", lora_dropout=0.0,
               attention_dropout=0.0, device="cpu")  # simcse: padded, two views of B / 2 sentences
    assert est.activations == pytest.approx(measured, rel=0.10)
    unpadded = plan(cfg, stage="simcse", batch_size=B // 2, max_length=T, dtype="float32", lora_dropout=0.0,
                    attention_dropout=0.0, device="cpu", padded=False)
    assert (est.activations > unpadded.activations) is (kv_heads != 6)
