"""Issue 9: the memory planner against what autograd really keeps, measured on CPU."""

import pytest
import torch
from peak_memory import measure_peak

from l2v.config import ModelConfig
from l2v.contrastive import contrastive_loss
from l2v.gradcache import embed_in_chunks
from l2v.lora import apply_lora, lora_parameters
from l2v.mntp import FAMILY_MASKING, IGNORE, mntp_loss
from l2v.model import Transformer
from l2v.pooling import mean_pool
from l2v.tokenizer import Batch
from l2v.tools.plan import MODEL_SHAPES, count_lora_parameters, count_parameters, format_plan, plan


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
    B, T = 4, 64
    ids = torch.randint(0, 300, (B, T))
    model.gradient_checkpointing = 2  # the first two blocks keep only their inputs, the last two everything
    measured = saved_activation_bytes(model, ids)
    model.gradient_checkpointing = False
    whole = saved_activation_bytes(model, ids)
    block_input = final_norm = B * T * cfg.hidden_size * 4  # fp32: a block's input, the final norm's input
    block = (whole - final_norm) / 4
    assert measured == pytest.approx(2 * block_input + 2 * block + final_norm, rel=0.02)  # + rotary tables
    model.gradient_checkpointing = True
    est = plan(cfg, stage="mntp", batch_size=B, max_length=T, dtype="float32", device="cpu")
    assert saved_activation_bytes(model, ids) == pytest.approx(4 * block_input + final_norm, rel=0.03)  # + rotary
    assert est.activations_checkpointed < est.activations / 2


# ---------------------------------------------------------------- a whole step's peak, measured


def test_measure_peak_counts_the_tensors_alive_at_once():
    """The CPU stand-in for torch.cuda.max_memory_allocated: parameters, then the step's high mark."""
    layer = torch.nn.Linear(256, 256, bias=False)  # 256 kB of parameters

    def step():
        a = torch.ones(1024, 1024)  # 4 MiB
        b = a * 2  # 8 MiB alive
        del a
        c = b + 1  # 8 MiB alive again, never 12
        del b
        return c.view(-1)[:10].clone()  # a view adds nothing; the clone 40 bytes beside c's 4 MiB

    assert measure_peak(step, layer) == 256 * 256 * 4 + 8 * 2**20


def training_step(stage: str, cfg: ModelConfig, B: int, T: int, *, checkpointing: bool, bf16: bool,
                  chunk_size: int | None = None):
    """A LoRA model and one training step of `stage` as the stage runs it: MNTP's packed rows,
    SimCSE's two views (attention dropout 0.3), supervised triples; left-padded contrastive rows;
    AdamW; bf16 weights under bf16 autocast, as on a GPU, or fp32."""
    torch.manual_seed(0)
    model = Transformer(cfg, causal=False)
    model = apply_lora(model.to(torch.bfloat16) if bf16 else model, r=16, alpha=32, dropout=0.05, fast=True).train()
    model.gradient_checkpointing = checkpointing
    model.set_attention_dropout(0.3 if stage == "simcse" else 0.0)
    opt = torch.optim.AdamW(lora_parameters(model), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    rows = {"mntp": 1, "simcse": 2, "supervised": 3}[stage] * B
    lengths = torch.randint(T // 2, T + 1, (rows,), generator=g)
    lengths[0] = T
    mask = (torch.arange(T)[None, :] >= T - lengths[:, None]).long()
    ids = torch.randint(3, cfg.vocab_size, (rows, T), generator=g) * mask
    labels = torch.where(torch.rand(ids.shape, generator=g) < FAMILY_MASKING["llama"].prob, ids, IGNORE)

    def embed(batch):
        return mean_pool(model(batch.input_ids, batch.attention_mask), batch.pool_mask)

    def step():
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            if stage == "mntp":
                loss = mntp_loss(model, ids, labels)[0]
            else:
                batch = Batch(ids, mask, mask)
                per = rows // B
                e = embed(batch) if chunk_size is None else embed_in_chunks(embed, batch, per * chunk_size)
                loss = contrastive_loss(*e.chunk(per))
        loss.backward()
        opt.step()  # the first step creates AdamW's state, which the second one holds throughout
        opt.zero_grad(set_to_none=True)

    return model, step


STEP_CASES = [  # stage, batch, length, GradCache chunk
    ("mntp", 16, 128, None),
    ("simcse", 16, 64, None),
    ("supervised", 16, 64, None),
    ("supervised", 32, 64, 8),
]


@pytest.mark.parametrize("precision", ["fp32", "bf16-autocast"])
@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointed", "whole"])
@pytest.mark.parametrize("stage,B,T,chunk", STEP_CASES, ids=["mntp", "simcse", "supervised", "supervised-gradcache"])
def test_a_training_steps_peak_is_within_the_plan(stage, B, T, chunk, checkpointing, precision):
    """Issue 26: the whole step — forward, backward (with recomputation), AdamW — never peaks above
    the plan, and the plan is not loose: measured / planned in [0.88, 1]. (Before the backward row
    and the LM head's gradients were counted, a checkpointed SimCSE step peaked at 1.10–1.24× its
    plan on a CPU, as on an H200: 1.11×.)"""
    bf16 = precision == "bf16-autocast"
    if bf16 and stage == "simcse":
        pytest.skip("attention dropout takes SDPA's math path on a CPU (plan device='cpu' counts it, in fp32)")
    cfg = ModelConfig(vocab_size=8000, hidden_size=256, intermediate_size=896, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=2)
    model, step = training_step(stage, cfg, B, T, checkpointing=checkpointing, bf16=bf16, chunk_size=chunk)
    measured = measure_peak(lambda: (step(), step()), model)
    # bf16 under autocast is what a GPU runs: plan it for the GPU (fused attention; no process row)
    est = plan(cfg, stage=stage, batch_size=B, max_length=T, dtype="bfloat16" if bf16 else "float32",
               device="cuda" if bf16 else "cpu", chunk_size=chunk)
    planned = est.total(checkpointing) - est.process - est.upcast
    assert 0.88 <= measured / planned <= 1.0, f"measured {measured / 2**20:.2f} MiB, planned {planned / 2**20:.2f} MiB"


def test_checkpointing_some_blocks_is_planned_and_measured(capsys):
    """Issue 26: checkpoint only as many blocks as the memory needs. total(k) runs from no
    checkpointing (k = 0) to all of it (k = L); the fewest k that fit is what `l2v plan
    --memory-gb` prints, and a step with k blocks checkpointed peaks within that plan."""
    cfg = ModelConfig(vocab_size=8000, hidden_size=256, intermediate_size=896, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=2)
    est = plan(cfg, stage="supervised", batch_size=16, max_length=64, dtype="float32", device="cpu")
    totals = [est.total(k) for k in range(5)]
    assert totals[0] == est.total(False) and totals[4] == est.total(True)
    # the last block, checkpointed, is recomputed as soon as backward reaches it: no memory saved
    assert all(a > b for a, b in zip(totals, totals[1:4])) and totals[4] > totals[3]
    budget = (totals[1] + totals[2]) / 2
    assert est.fewest_checkpointed(budget) == 2 and est.fewest_checkpointed(totals[3] - 1) is None
    with pytest.raises(ValueError, match="checkpointing 5 blocks: the model has 4"):
        est.total(5)
    model, step = training_step("supervised", cfg, 16, 64, checkpointing=2, bf16=False)
    measured = measure_peak(lambda: (step(), step()), model)
    planned = totals[2] - est.process
    assert 0.88 <= measured / planned <= 1.0, (measured, planned)

    from l2v.tools.cli import main as cli

    cli(["plan", "--config", "mistral-7b", "--batch-size", "32", "--max-length", "512", "--memory-gb", "80"])
    out = capsys.readouterr().out
    k = plan(ModelConfig(**MODEL_SHAPES["mistral-7b"]), stage="mntp", batch_size=32,
             max_length=512).fewest_checkpointed(0.92 * 80 * 2**30)
    assert 0 < k < 32 and f"80 GB: checkpoint {k} of 32 blocks (--checkpoint-layers {k})" in out


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
