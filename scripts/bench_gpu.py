"""One GPU benchmark: l2v against transformers + peft on the same random 7B, one process, bf16.

    python scripts/bench_gpu.py            # Mistral-7B's shape on this GPU: ~3-5 minutes on an H200
    python scripts/bench_gpu.py --smoke    # a tiny model on any device (CI runs it on a CPU)

Both implementations run the *same* weights: the random bf16 model is built once on the GPU
(meta-device construction, then storage allocated there: nothing is written or read from disk) and
transformers' MistralForCausalLM is assembled around the very same tensors. It prints:

    this GPU's bf16 matmul rate          8192³ GEMMs, the yardstick for every "share" below
    encode                               2,048 texts of 8-60 tokens, causal, mean pooling: l2v's
                                         Encoder against transformers (SDPA, masked mean) in input
                                         order, and against transformers given l2v's length order
    MNTP step 32 × 512, SimCSE 128 × 128 LoRA r16 on 7 projections, bf16 autocast, AdamW, gradient
                                         checkpointing: s/step, peak memory, tokens/s, share of the
                                         matmul rate, l2v's plan. l2v twice: every block checkpointed
                                         (as the peer), then only as many as this GPU needs
                                         (`Plan.fewest_checkpointed`, `--checkpoint-layers`)
    the paper's budget                   1000 MNTP steps on this GPU against ≈ 100 minutes on an A100

The peer's MNTP is transformers' own loss (logits at every position, as llm2vec's MNTP trainer);
l2v's computes the LM head only at the masked positions — that difference is part of what is
compared. Speed goals (issue 26): MNTP and SimCSE ≥ 1.4× the peer at no more memory, encode ≥ 1.3×.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from peak_memory import measure_peak

import l2v
from l2v.config import ModelConfig
from l2v.contrastive import contrastive_loss
from l2v.lora import DEFAULT_TARGETS, apply_lora
from l2v.mntp import FAMILY_MASKING, IGNORE, mntp_loss
from l2v.model import Transformer
from l2v.pooling import mean_pool
from l2v.runtime.precision import native_bf16
from l2v.tools.plan import MODEL_SHAPES, plan

sys.path.insert(0, str(Path(__file__).parent))
from bench import sentences, timed  # noqa: E402  (scripts/bench.py's sentences and best-of-N timer)

GIB = 2**30
PAPER_MINUTES = 100  # 1000 MNTP steps of a 7B model, 32 × 512, on one A100 (LLM2Vec, appendix)
FULL = dict(mntp=(32, 512), simcse=(128, 128), encode=2048, gemm=8192, steps=3)
SMOKE = dict(mntp=(4, 64), simcse=(8, 32), encode=64, gemm=256, steps=2)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_tflops(n: int, device, dtype) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 10 * 2 * n**3 / timed(lambda: ([a @ b for _ in range(10)], sync(device))) / 1e12


# ---------------------------------------------------------------- one set of weights, two models


def random_model(cfg: ModelConfig, device, dtype) -> Transformer:
    with torch.device("meta"):
        model = Transformer(cfg, causal=False)
    model = model.to(dtype).to_empty(device=device)
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.02, generator=g) if p.dim() > 1 else p.fill_(1.0)
    return model


def transformers_twin(model: Transformer, device):
    """transformers' MistralForCausalLM holding the l2v model's own tensors (no copy)."""
    import transformers

    fields = {k: v for k, v in model.config.to_dict().items() if k != "model_type"}
    hf_config = transformers.MistralConfig(**fields)
    hf_config._attn_implementation = "sdpa"
    with torch.device("meta"):
        hf = transformers.MistralForCausalLM(hf_config)
    hf.load_state_dict(model.state_dict(), assign=True)
    rotary = hf.model.rotary_emb  # its inv_freq is a non-persistent buffer: not in any state dict
    with torch.device(device):
        hf.model.rotary_emb = type(rotary)(config=hf_config)
    left = [n for n, t in list(hf.named_parameters()) + list(hf.named_buffers()) if t.device.type == "meta"]
    assert not left, f"not shared: {left[:3]}"
    return hf


def same_outputs(model, hf, device, vocab: int, autocast: bool) -> float:
    """Min cosine of the two models' last hidden states on random ids (causal, both): the weights
    really are shared and the two compute the same network."""
    ids = torch.randint(3, vocab, (2, 24), device=device)
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=autocast):
        a = model(ids, causal=True).float()
        b = hf.model(input_ids=ids).last_hidden_state.float()
    return torch.nn.functional.cosine_similarity(a.flatten(0, 1), b.flatten(0, 1), dim=-1).min().item()


# ---------------------------------------------------------------- encode


def bench_encode(model, hf, tokenizer, n: int, device, autocast: bool) -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    texts = [s for w in torch.randint(5, 46, (n,), generator=g).tolist() for s in sentences(1, words=w, seed=w)]
    model.causal = True  # as transformers' model: a like-for-like forward pass
    enc = l2v.Encoder(model, tokenizer, pooling="mean", max_length=128, autocast=autocast)
    seqs = [enc.layout([], ids) for ids in tokenizer.encode_batch(texts)]
    tokens = sum(len(ids) for ids, _ in seqs)
    batch = 256

    def ours():
        enc.encode(texts, batch_size=batch, show_progress_bar=False)

    def theirs(order):
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            for s in range(0, n, batch):
                b = tokenizer.pad([seqs[i] for i in order[s : s + batch]]).to(device)
                h = hf.model(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
                m = b.pool_mask[..., None].to(h.dtype)
                ((h * m).sum(1) / m.sum(1)).float().cpu()

    by_length = sorted(range(n), key=lambda i: -len(seqs[i][0]))
    times = {name: timed(lambda fn=fn: (fn(), sync(device))) for name, fn in
             (("l2v", ours), ("hf", lambda: theirs(range(n))), ("hf sorted", lambda: theirs(by_length)))}
    model.causal = False
    label = f"encode {n} texts ({tokens} tokens)"
    return [(label + ", peer in input order", times["l2v"], times["hf"], tokens),
            (label + ", peer length-sorted", times["l2v"], times["hf sorted"], tokens)]


# ---------------------------------------------------------------- training steps


def padded(rows: int, length: int, vocab: int, device):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(length // 2, length + 1, (rows,), generator=g)
    lengths[0] = length
    mask = (torch.arange(length)[None, :] >= length - lengths[:, None]).long()  # left padding
    return (torch.randint(3, vocab, (rows, length), generator=g) * mask).to(device), mask.to(device)


def l2v_step(model, stage: str, B: int, T: int, autocast: bool):
    device, vocab = model.lm_head.weight.device, model.config.vocab_size
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.set_attention_dropout(0.3 if stage == "simcse" else 0.0)
    rate = FAMILY_MASKING.get(model.config.model_type, FAMILY_MASKING["llama"]).prob
    ids, mask = padded(B, T, vocab, device)
    two_ids, two_mask = torch.cat([ids, ids]), torch.cat([mask, mask])  # SimCSE's two views

    def step():
        with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            if stage == "mntp":
                x = torch.randint(3, vocab, (B, T), device=device)  # packed blocks: no padding
                labels = torch.where(torch.rand(x.shape, device=device) < rate, x, torch.full_like(x, IGNORE))
                loss = mntp_loss(model, x, labels)[0]
            else:
                loss = contrastive_loss(*mean_pool(model(two_ids, two_mask), two_mask).chunk(2))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def hf_step(peft_model, stage: str, B: int, T: int, autocast: bool, vocab: int, rate: float):
    """transformers + peft as a user of both runs them: a 4-D mask that hides only padding (no
    causal mask), the model's own LM loss for MNTP, attention dropout on the modules."""
    device = next(peft_model.parameters()).device
    dtype = next(peft_model.parameters()).dtype
    base = peft_model.base_model.model
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-5)
    for m in base.modules():
        if hasattr(m, "attention_dropout"):
            m.attention_dropout = 0.3 if stage == "simcse" else 0.0
    ids, mask = padded(B, T, vocab, device)
    two_ids, two_mask = torch.cat([ids, ids]), torch.cat([mask, mask])
    hide = torch.finfo(dtype).min
    padding_only = ((1 - two_mask[:, None, None, :].to(dtype)) * hide).expand(-1, 1, T, T)
    nothing = torch.zeros(B, 1, T, T, device=device, dtype=dtype)

    def step():
        with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            if stage == "mntp":
                x = torch.randint(3, vocab, (B, T), device=device)
                labels = torch.where(torch.rand(x.shape, device=device) < rate, x, torch.full_like(x, IGNORE))
                loss = peft_model(input_ids=x, attention_mask=nothing, labels=labels).loss
            else:
                h = base.model(input_ids=two_ids, attention_mask=padding_only).last_hidden_state
                m = two_mask[..., None].to(h.dtype)
                loss = contrastive_loss(*((h * m).sum(1) / m.sum(1)).chunk(2))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def timed_steps(step, model, steps: int, device) -> tuple[float, int]:
    """→ (median seconds a step after one warm-up step, peak bytes of one more step)."""
    step()  # warm-up; also makes AdamW's state, which every later step holds
    sync(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), measure_peak(step, model)


def free(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def print_training_row(row, rate: float):
    label, ours, theirs, tokens, peak, hf_peak, planned, tflops = row
    print(f"{label:44} {ours:6.2f} {theirs:6.2f} {theirs / ours:7.2f}× {peak / GIB:7.2f} {hf_peak / GIB:8.2f} "
          f"{peak / hf_peak:5.2f}× {planned / GIB:8.2f} {peak / planned:5.2f} {tokens / ours:8.0f} "
          f"{tflops / rate:6.0%}", flush=True)


def useful_flops(cfg: ModelConfig, T: int) -> float:
    """Per token: forward (2 per weight) and the input gradients (2 more; a frozen base needs no
    weight gradients), attention's two T×T products the same way; recomputation not counted."""
    hd, H, KV, D, I = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size, \
        cfg.intermediate_size
    weights = D * H * hd + 2 * D * KV * hd + H * hd * D + 3 * D * I
    return cfg.num_hidden_layers * (4 * weights + 3 * 4 * T * H * hd)


# ---------------------------------------------------------------- the run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a tiny Mistral-shaped model: checks this script anywhere")
    parser.add_argument("--tokenizer", default="weights/smollm2-135m-instruct",
                        help="a folder with tokenizer.json (its vocabulary sizes the model)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--checkpoint-layers", type=int, default=None,
                        help="l2v's second row: this many blocks checkpointed (default: the fewest this GPU needs)")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    import peft
    import transformers

    device = l2v.formats.loading.resolve_device(args.device)
    size = SMOKE if args.smoke else FULL
    autocast = native_bf16(device.type)  # bf16 weights computed in bf16: the GPU path (and AVX-512 BF16 CPUs)
    dtype = torch.bfloat16 if autocast else torch.float32
    tokenizer = l2v.Tokenizer(args.tokenizer)
    shape = dict(MODEL_SHAPES["mistral-7b"], vocab_size=tokenizer.vocab_size, sliding_window=None)
    if args.smoke:
        shape.update(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=2)
    cfg = ModelConfig(**shape)
    if args.checkpoint_layers is not None and not 0 <= args.checkpoint_layers <= cfg.num_hidden_layers:
        parser.error(f"--checkpoint-layers {args.checkpoint_layers}: the model has {cfg.num_hidden_layers} blocks")
    if device.type == "cuda":
        name, memory = torch.cuda.get_device_name(device), torch.cuda.get_device_properties(device).total_memory
        cuda = f"CUDA {torch.version.cuda}"
    else:
        name, memory, cuda = f"CPU ({torch.get_num_threads()} threads)", 0, "no CUDA"
    print(f"{name}; torch {torch.__version__}, {cuda}, transformers {transformers.__version__}, peft {peft.__version__}")
    rate = gemm_tflops(size["gemm"], device, dtype)
    print(f"{str(dtype).removeprefix('torch.')} matmul rate ({size['gemm']}³ GEMMs): {rate:.1f} TFLOP/s")

    model = random_model(cfg, device, dtype)
    hf = transformers_twin(model, device)
    hf.config.use_cache = False  # no KV cache built in encode's forward passes either
    n_params = sum(p.numel() for p in model.parameters())
    cosine = same_outputs(model, hf, device, cfg.vocab_size, autocast)
    print(f"random Mistral-7B-shaped model: {n_params / 1e9:.2f}B parameters, {cfg.num_hidden_layers} blocks, "
          f"vocabulary {cfg.vocab_size}; l2v and transformers share its tensors "
          f"(min cosine of their hidden states {cosine:.4f})")
    if cosine < 0.98:
        raise SystemExit("l2v and transformers disagree on the same weights: the comparison would mean nothing")

    rows = bench_encode(model, hf, tokenizer, size["encode"], device, autocast)
    print(f"\n{'':52} {'l2v s':>8} {'peer s':>8} {'speed-up':>8} {'tokens/s':>9}")
    for label, ours, theirs, tokens in rows:
        print(f"{label:52} {ours:8.2f} {theirs:8.2f} {theirs / ours:7.2f}× {tokens / ours:9.0f}", flush=True)
    print(f"\n{'':44} {'l2v s':>6} {'peer s':>6} {'speed-up':>8} {'l2v GiB':>7} {'peer GiB':>8} {'memory':>6} "
          f"{'plan GiB':>8} {'÷plan':>5} {'tokens/s':>8} {'matmul':>6}", flush=True)

    apply_lora(model, r=16, alpha=32, dropout=0.05, fast=True).train()
    with warnings.catch_warnings():  # transformers 5.25 renames gradient checkpointing; 5.17 knows the old name
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = peft.get_peft_model(hf, peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                                             target_modules=list(DEFAULT_TARGETS))).train()
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    mask_rate = FAMILY_MASKING[cfg.model_type].prob
    training = []
    for stage in ("mntp", "simcse"):
        B, T = size[stage]
        views = 2 if stage == "simcse" else 1
        est = plan(cfg, stage=stage, batch_size=B, max_length=T, dtype=str(dtype).removeprefix("torch."),
                   device="cuda" if device.type == "cuda" else "cpu")
        L, tokens = cfg.num_hidden_layers, B * T * views
        # Fewer checkpointed blocks where this GPU has room; 15 % kept free (plan ± a few %, fragmentation).
        fewest = est.fewest_checkpointed(0.85 * memory) if memory else None
        fewest = fewest if args.checkpoint_layers is None else args.checkpoint_layers
        hf_s, hf_peak = timed_steps(hf_step(peft_model, stage, B, T, autocast, cfg.vocab_size, mask_rate), hf,
                                    size["steps"], device)
        free(device)
        todo = [L] + ([fewest] if fewest not in (None, L) else [])
        while todo:
            k = todo.pop(0)
            model.gradient_checkpointing = k
            try:
                s, peak = timed_steps(l2v_step(model, stage, B, T, autocast), model, size["steps"], device)
            except torch.cuda.OutOfMemoryError:
                retry = f"; trying {k + 4}" if k + 4 < L else ""
                print(f"{stage}: out of memory with {k} of {L} blocks checkpointed{retry}", flush=True)
                todo += [k + 4] if retry else []
                continue
            finally:
                model.gradient_checkpointing = False
                free(device)
            what = "all blocks" if k == L else f"{k} of {L} blocks"
            planned = est.total(k) - est.process - est.upcast  # tensors only, as measured
            row = (f"{stage} {B}×{T}, {what} checkpointed", s, hf_s, tokens, peak, hf_peak, planned,
                   useful_flops(cfg, T) * tokens / s / 1e12)
            training.append(row)
            print_training_row(row, rate)

    mntp = [r for r in training if r[0].startswith("mntp")]
    if mntp and not args.smoke:
        best = min(r[1] for r in mntp)
        print(f"\npaper budget: 1000 MNTP steps of 32 × 512 take {1000 * best / 60:.0f} minutes here "
              f"(the paper: ≈ {PAPER_MINUTES} minutes on one A100)")
    for stage, goal in (("mntp", "MNTP ≥ 1.4×"), ("simcse", "SimCSE ≥ 1.4×")):
        found = [r for r in training if r[0].startswith(stage)]
        within = [r for r in found if r[4] <= r[5]]  # at no more memory than the peer
        best = max(within or found, key=lambda r: r[2] / r[1], default=None)
        if best:
            speed, memory_ratio = best[2] / best[1], best[4] / best[5]
            met = "met" if speed >= 1.4 and memory_ratio <= 1.0 else "not met"
            print(f"goal {goal} at no more memory: {met} ({speed:.2f}×, {memory_ratio:.2f}× memory; {best[0]})")
        fastest = max(found, key=lambda r: r[2] / r[1], default=None)
        if fastest and fastest is not best:
            print(f"  fastest, with more memory than the peer: {fastest[2] / fastest[1]:.2f}×, "
                  f"{fastest[4] / fastest[5]:.2f}× memory ({fastest[0]})")
    speed = rows[0][2] / rows[0][1]
    print(f"goal encode ≥ 1.3×: {'met' if speed >= 1.3 else 'not met'} ({speed:.2f}× the peer in input order, "
          f"{rows[1][2] / rows[1][1]:.2f}× the peer given l2v's length order)")
    print(f"done in {time.perf_counter() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
