"""Issue 15: gradient caching (l2v/gradcache.py) gives the whole batch's loss and gradients, replays
dropout exactly, resumes exactly, works across processes, and needs a chunk's memory, not a batch's."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TINY_CORPUS, free_port, simcse_run
from torch.testing import assert_close

import l2v
from l2v.contrastive import contrastive_loss
from l2v.gradcache import embed_in_chunks
from l2v.lora import apply_lora, lora_parameters
from l2v.runtime import distributed
from l2v.simcse import two_views
from l2v.supervised import Triple, embed_triples

SENTENCES = list(dict.fromkeys(TINY_CORPUS))  # 7 distinct sentences of different lengths
TRIPLES = [Triple(f"where did cat {i} sit?", f"The cat {i} sat on the mat.", f"A dog {i} ran in the park.",
                  instruction="Retrieve the answer:") for i in range(6)]


def lora_encoder(folder, *, dropout=0.0, lora_dropout=0.0, device="cpu"):
    torch.manual_seed(0)
    model = apply_lora(l2v.load_model(folder, causal=False, device=device), r=4, alpha=8, dropout=lora_dropout)
    with torch.no_grad():  # B ≠ 0, so every LoRA matrix gets a gradient
        for p in lora_parameters(model):
            p.normal_(std=0.05)
    model.set_attention_dropout(dropout)
    encoder = l2v.Encoder(model, l2v.Tokenizer(folder))
    model.train()  # after Encoder(), which puts the model in eval mode
    return encoder


def simcse_step(encoder, chunk_size):
    encoder.model.zero_grad(set_to_none=True)
    a, b = two_views(encoder, encoder.tokenizer(SENTENCES), chunk_size)
    loss = contrastive_loss(a, b)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in lora_parameters(encoder.model)]


def supervised_step(encoder, chunk_size):
    encoder.model.zero_grad(set_to_none=True)
    loss = contrastive_loss(*embed_triples(encoder, TRIPLES, chunk_size), scale=50.0)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in lora_parameters(encoder.model)]


def max_relative_difference(grads, want):
    return max(((g - w).abs().max() / w.abs().max()).item() for g, w in zip(grads, want))


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("step", [simcse_step, supervised_step])
def test_dropout_off_loss_and_every_lora_gradient_equal_the_whole_batch(tiny_encoder_folder, step, checkpointing):
    encoder = lora_encoder(tiny_encoder_folder)
    encoder.model.gradient_checkpointing = checkpointing
    loss, want = step(encoder, None)
    for chunk_size in (1, 2, 4):  # uneven last chunks included (7 sentences, 6 triples)
        got_loss, got = step(encoder, chunk_size)
        assert_close(got_loss, loss, rtol=1e-6, atol=0)
        assert len(got) == len(want) == 2 * 7 * 3  # A and B of 7 projections in 3 layers
        assert max_relative_difference(got, want) <= 1e-5
        assert all(w.abs().max() > 0 for w in want)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_dropout_on_the_two_passes_embed_identically_and_the_gradient_is_exact(tiny_encoder_folder, device):
    encoder = lora_encoder(tiny_encoder_folder, dropout=0.3, lora_dropout=0.1, device=device)
    batch = encoder.tokenizer(SENTENCES).to(device)
    doubled = l2v.tokenizer.Batch(*(torch.cat([t, t]) for t in (batch.input_ids, batch.attention_mask,
                                                                 batch.pool_mask)))
    calls = []

    def embed(chunk):
        out = encoder.embed(chunk)
        calls.append((torch.is_grad_enabled(), out.detach().clone()))
        return out

    torch.manual_seed(1)
    emb = embed_in_chunks(embed, doubled, 4)  # 14 rows: chunks of 4, 4, 4, 2
    a, b = emb.chunk(2)
    assert not torch.allclose(a, b, atol=1e-3)  # dropout is on: the two views differ
    contrastive_loss(a, b).backward()
    first, second = calls[:4], calls[4:]
    assert [g for g, _ in first] == [False] * 4 and [g for g, _ in second] == [True] * 4
    for (_, x), (_, y) in zip(first, second):
        assert torch.equal(x, y)  # the same dropout masks, bit for bit
    got = [p.grad.clone() for p in lora_parameters(encoder.model)]
    # The reference: the same four chunks from the same seed, with autograd, one graph, one backward.
    encoder.model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    rows = [l2v.tokenizer.Batch(*(t[s:s + 4] for t in (doubled.input_ids, doubled.attention_mask,
                                                      doubled.pool_mask))) for s in range(0, 14, 4)]
    a2, b2 = torch.cat([encoder.embed(r) for r in rows]).chunk(2)
    assert torch.equal(a2.detach(), a.detach())
    contrastive_loss(a2, b2).backward()
    want = [p.grad for p in lora_parameters(encoder.model)]
    assert max_relative_difference(got, want) <= 1e-5
    # One chunk holding the whole batch is the plain call: the same random draws.
    torch.manual_seed(2)
    plain = torch.cat(two_views(encoder, batch))
    torch.manual_seed(2)
    assert torch.equal(torch.cat(two_views(encoder, batch, chunk_size=len(SENTENCES))), plain)


def test_a_randomness_the_replay_misses_is_an_error(tiny_encoder_folder):
    encoder = lora_encoder(tiny_encoder_folder)
    batch = encoder.tokenizer(SENTENCES)
    noise = torch.Generator().manual_seed(0)  # a generator of its own: not replayed

    def noisy(chunk):
        return encoder.embed(chunk) + torch.randn(chunk.input_ids.shape[0], 48, generator=noise)

    emb = embed_in_chunks(noisy, batch, 3)
    with pytest.raises(RuntimeError, match="chunk 0's second pass differs from its first"):
        emb.sum().backward()
    with pytest.raises(ValueError, match="chunk size must be at least 1"):
        embed_in_chunks(encoder.embed, batch, 0)


def test_bf16_autocast(tiny_encoder_folder):
    encoder = lora_encoder(tiny_encoder_folder, dropout=0.3, lora_dropout=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = two_views(encoder, encoder.tokenizer(SENTENCES), chunk_size=2)
        loss = contrastive_loss(a, b)
    loss.backward()  # outside autocast, like the training loop: step 3 re-enters it
    assert torch.isfinite(loss) and all(p.grad is not None for p in lora_parameters(encoder.model))


def test_chunked_simcse_resumes_exactly(tiny_encoder_folder, sentence_file, tmp_path, monkeypatch):
    kw = dict(steps=6, chunk_size=1)
    straight = [r["loss"] for r in simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "a", **kw) if "loss" in r]
    import l2v.runtime.checkpoints as tr

    real_save = tr.save_checkpoint
    monkeypatch.setattr(tr, "save_checkpoint", lambda *a, **k: real_save(*a, **k) if a[4] <= 3 else None)
    simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "c", save_every=3, **kw)
    monkeypatch.undo()
    resumed = [r["loss"] for r in simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "c", save_every=3,
                                         resume=True, **kw) if "loss" in r]
    assert_close(torch.tensor(resumed), torch.tensor(straight), atol=1e-6, rtol=0)
    # and the chunks are not a different objective: with batch 4 a chunk of 4 is the plain run
    plain = [r["loss"] for r in simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "p", steps=2) if "loss" in r]
    whole = [r["loss"] for r in simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "w", steps=2, chunk_size=4)
             if "loss" in r]
    assert plain == whole


def worker(rank, world, port, folder, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    assert distributed.init() and distributed.world_size() == world
    encoder = lora_encoder(folder)
    q, p, n = (distributed.gather_with_grad(v) for v in embed_triples(encoder, distributed.shard(TRIPLES), 1))
    loss = contrastive_loss(q, p, n, scale=50.0)
    loss.backward()
    params = lora_parameters(encoder.model)
    distributed.average_gradients(params)
    torch.save({"loss": loss.detach(), "grads": [p.grad for p in params]}, f"{out}/rank{rank}.pt")
    dist.barrier()  # no rank tears gloo down while the other still talks to it (an abort at exit)
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_with_chunks_equal_one_on_the_whole_batch(tiny_encoder_folder, tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tiny_encoder_folder), str(tmp_path)), nprocs=2, join=True)
    loss, want = supervised_step(lora_encoder(tiny_encoder_folder), None)  # one process, unchunked
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert_close(got["loss"], loss, atol=1e-5, rtol=0)
        assert max_relative_difference(got["grads"], want) <= 1e-5


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from l2v.config import ModelConfig
    from l2v.lora import apply_lora
    from l2v.model import Transformer
    from l2v.contrastive import contrastive_loss
    from l2v.simcse import two_views
    from l2v.tokenizer import Batch
    import l2v

    batch_size, chunk = int(sys.argv[1]), (int(sys.argv[2]) or None)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = ModelConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2)
    model = apply_lora(Transformer(config, causal=False), r=8, alpha=16, dropout=0.05)
    model.set_attention_dropout(0.3)
    encoder = l2v.Encoder(model.train(), tokenizer=type("T", (), {"eos_id": 2, "add_eos": False,
                                                                  "add_bos": False, "bos_id": None})())
    ids = torch.randint(3, 256, (batch_size, 64))
    ones = torch.ones_like(ids)
    a, b = two_views(encoder, Batch(ids, ones, ones), chunk)
    contrastive_loss(a, b).backward()
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec,
    # so under a large pytest process every child would report the parent's peak.
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"peak_mib": int(hwm.split()[1]) / 1024}))
""")


def peak_mib(batch_size, chunk):
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(batch_size), str(chunk)], capture_output=True,
                         text=True, check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def test_peak_memory_grows_with_the_chunk_not_the_batch():
    small, big, big_chunked = peak_mib(4, 0), peak_mib(64, 0), peak_mib(64, 4)
    # Batch 64 keeps ~16x batch 4's activations (hundreds of MiB here); in chunks of 4 it keeps one chunk's
    # plus the batch's embeddings. (The allocator makes `big` vary by ~50 % run to run: measured
    # 264-278 / 543-832 / 322-328 MiB; without chunking big_chunked would be `big`.)
    assert big - small > 200
    assert big_chunked - small < 0.35 * (big - small), (small, big, big_chunked)


def test_plan_counts_one_chunk_of_activations(capsys):
    from l2v.config import ModelConfig
    from l2v.tools.cli import main as cli
    from l2v.tools.plan import MODEL_SHAPES, plan

    c = ModelConfig(**MODEL_SHAPES["mistral-7b"])
    whole = plan(c, stage="supervised", batch_size=64, max_length=512)
    chunked = plan(c, stage="supervised", batch_size=512, max_length=512, chunk_size=64)
    cache = 512 * 3 * c.hidden_size * 4 * 2  # the batch's embeddings and their gradient, fp32
    assert chunked.activations == whole.activations + cache
    assert chunked.activations_checkpointed == whole.activations_checkpointed + cache
    assert plan(c, stage="simcse", batch_size=8, max_length=64, chunk_size=8) == plan(c, stage="simcse", batch_size=8,
                                                                                      max_length=64)
    with pytest.raises(ValueError, match="--chunk-size is GradCache for the contrastive stages"):
        plan(c, stage="mntp", batch_size=8, max_length=64, chunk_size=2)
    # The supervised paper preset (512 × 512, chunks of 64) on one 80 GB GPU, with checkpointing
    cli(["plan", "--config", "llama-3-8b", "--stage", "supervised", "--batch-size", "512", "--chunk-size", "64"])
    out = capsys.readouterr().out
    assert "GradCache chunks of 64" in out
    assert "with checkpointing" in out and out.split("with checkpointing")[1].split("\n")[0].endswith("80 GB: fits)")


def test_cli_chunk_size(tiny_encoder_folder, tmp_path, capsys):
    from l2v.tools.cli import main as cli

    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"query": t.query, "positive": t.positive, "negative": t.negative}) + "\n"
                            for t in TRIPLES))
    cli(["supervised", "--model", str(tiny_encoder_folder), "--data", str(data), "--out", str(tmp_path / "out"),
         "--steps", "1", "--batch-size", "4", "--max-length", "24", "--chunk-size", "2"])
    assert "GradCache, 2 triples per pass" in capsys.readouterr().out
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    with pytest.raises(SystemExit) as stop:  # a usage error, named by argparse
        cli(["supervised", "--model", str(tiny_encoder_folder), "--data", str(data), "--out", str(tmp_path / "o2"),
             "--steps", "1", "--batch-size", "4", "--chunk-size", "0"])
    assert stop.value.code == 2 and "--chunk-size: must be an integer ≥ 1, got 0" in capsys.readouterr().err
    from l2v.supervised import run_supervised

    with pytest.raises(ValueError, match="chunk_size must be an integer ≥ 1, got 0"):
        run_supervised(tiny_encoder_folder, None, data, tmp_path / "o3", steps=1, batch_size=4, chunk_size=0)
