"""Issue 9 on a GPU (skipped without one): a random-initialised 7B-config model — no weights to
download — one MNTP and one SimCSE step with gradient checkpointing, peak memory within the plan."""

import time

import pytest
import torch

from l2v.config import ModelConfig
from l2v.lora import apply_lora
from l2v.mntp import IGNORE, mntp_loss
from l2v.model import Transformer
from l2v.plan import PRESETS, plan
from l2v.simcse import contrastive_loss
from l2v.pooling import mean_pool

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def random_7b(name: str, device="cuda"):
    config = ModelConfig(**PRESETS[name])
    with torch.device("meta"):
        model = Transformer(config, causal=False)
    model = model.to_empty(device=device).to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.02) if p.dim() > 1 else p.fill_(1.0)
    if config.tie_word_embeddings:
        model.tie_weights()
    return apply_lora(model, r=16, alpha=32, dropout=0.05).train()


@pytest.mark.parametrize("stage,batch,length", [("mntp", 8, 512), ("simcse", 16, 128)])
def test_7b_step_fits_the_plan(stage, batch, length, capsys):
    torch.cuda.reset_peak_memory_stats()
    model = random_7b("mistral-7b")
    model.gradient_checkpointing = True
    if stage == "simcse":
        model.set_attention_dropout(0.3)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(0, 32000, (batch, length), device="cuda")
    times = []
    for _ in range(2):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if stage == "mntp":
                labels = torch.where(torch.rand(ids.shape, device="cuda") < 0.2, ids, torch.full_like(ids, IGNORE))
                loss, _ = mntp_loss(model, ids, labels)
            else:
                doubled = torch.cat([ids, ids])
                h = mean_pool(model(doubled), torch.ones_like(doubled))
                loss = contrastive_loss(*h.chunk(2))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated()
    est = plan(model.config, stage=stage, batch_size=batch, max_length=length).total(checkpointing=True)
    with capsys.disabled():
        print(f"\n{stage} 7B step {batch}x{length}: {times[-1]:.2f} s, peak {peak / 2**30:.1f} GiB, "
              f"plan {est / 2**30:.1f} GiB ({torch.cuda.get_device_name()})")
    assert torch.isfinite(loss)
    assert peak <= 1.15 * est
