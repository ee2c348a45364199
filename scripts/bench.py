"""Benchmarks: l2v against transformers (+ peft) on the same converted folder, same inputs, one run.

    python scripts/bench.py encode [--model weights/smollm2-135m-instruct] [--threads 2]
    python scripts/bench.py mntp   [--batch-size 16 --max-length 128 --steps 3]   # fp32, and bf16 autocast
    python scripts/bench.py simcse [--batch-size 16 --max-length 128 --steps 3]
    python scripts/bench.py load                                     # peak memory of load_model
    python scripts/bench.py scale  [--layers 2 --hidden 1024 ...]    # a Mistral-7B-shaped model, end to end
    python scripts/bench.py gemm                                     # this CPU's matmul limit; each workload's share
    python scripts/bench.py floor [--rate GFLOPS]                    # the least minutes each demo budget can take

Training steps run each implementation in a fresh subprocess, so peak resident memory
(ru_maxrss) belongs to that implementation alone.

Not a test: speed goals live here, with numbers printed side by side (docs/benchmarks.md and
docs/scaling.md hold the measured ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import l2v
from l2v.runtime.precision import native_bf16

WORDS = ("the a of river market science history music city team report energy garden policy ancient "
         "modern quickly slowly because although under between people government water light").split()


def sentences(n: int, words: int = 17, seed: int = 0) -> list[str]:
    """n synthetic English-like sentences of about 20 tokens (fixed seed)."""
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (words,), generator=g)).capitalize() + "."
            for _ in range(n)]


def timed(fn, repeats: int = 2) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_encode(args):
    import transformers

    texts = sentences(256)
    rows = []
    # Like for like: both in fp32, both with bf16 weights, both with fp32 weights under bf16 autocast.
    for label, dtype, autocast in (("float32", torch.float32, False), ("bfloat16", torch.bfloat16, False),
                                   ("fp32+autocast", torch.float32, True)):
        enc = l2v.Encoder.from_pretrained(args.model, causal=True, dtype=dtype, autocast=autocast)
        tk = enc.tokenizer
        n_tokens = sum(len(tk.encode(t)) for t in texts)
        ours = timed(lambda: enc.encode(texts, batch_size=32, show_progress_bar=False))

        hf = transformers.AutoModel.from_pretrained(args.model, dtype=dtype).eval()

        def hf_encode():
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                for s in range(0, len(texts), 32):
                    b = tk(texts[s : s + 32])  # same ids, left padding, in input order
                    h = hf(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
                    m = b.pool_mask[..., None].to(h.dtype)
                    (h * m).sum(1) / m.sum(1)

        theirs = timed(hf_encode)
        rows.append((label, n_tokens / ours, n_tokens / theirs))
    native = "native" if native_bf16("cpu") else "NOT native"
    print(f"encode {len(texts)} sentences ({n_tokens} tokens, batch 32, causal, mean pooling); bf16 {native}")
    print(f"{'dtype':14} {'l2v tok/s':>10} {'hf tok/s':>10} {'ratio':>6}")
    for dtype, a, b in rows:
        print(f"{dtype:14} {a:10.0f} {b:10.0f} {a / b:6.2f}x")


def mntp_batch(tokenizer, batch_size: int, max_length: int):
    from l2v.data import read_texts
    from l2v.mntp import FAMILY_MASKING, mask_tokens, pack_blocks

    blocks = pack_blocks(tokenizer, read_texts("wiki")[:400], max_length)[:batch_size]
    return mask_tokens(blocks, tokenizer, FAMILY_MASKING["llama"], torch.Generator().manual_seed(0))


def simcse_batch(tokenizer, batch_size: int, max_length: int):
    """batch_size wiki sentences, cut or padded to exactly max_length tokens (left padding)."""
    from l2v.data import read_sentences

    ids = [x for x in tokenizer.encode_batch(read_sentences("wiki")[:2000]) if len(x) >= max_length // 2][:batch_size]
    return tokenizer.pad([(x[:max_length], 0) for x in ids])


def step_worker(args):
    """One implementation's training steps, in this (fresh) process; prints a JSON line."""
    from l2v.contrastive import contrastive_loss
    from l2v.lora import DEFAULT_TARGETS, apply_lora
    from l2v.mntp import mntp_loss
    from l2v.simcse import two_views

    tk = l2v.Tokenizer(args.model)
    torch.manual_seed(0)
    if args.what == "mntp":
        inputs, labels = mntp_batch(tk, args.batch_size, args.max_length)
    else:
        batch = simcse_batch(tk, args.batch_size, args.max_length)
    if args.impl == "l2v":
        model = apply_lora(l2v.load_model(args.model, causal=False), r=16, alpha=32, dropout=0.05,
                           fast=True).train()  # the path training takes (train.prepare_model)
        if args.what == "mntp":
            def loss():
                return mntp_loss(model, inputs, labels)[0]
        else:
            model.set_attention_dropout(0.3)
            encoder = l2v.Encoder(model, tk)

            def loss():
                return contrastive_loss(*two_views(encoder, batch))
    else:
        import peft
        import transformers

        dropout = 0.3 if args.what == "simcse" else 0.0  # set at load: changing config later does not reach the modules
        hf = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attention_dropout=dropout)
        model = peft.get_peft_model(hf, peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                                         target_modules=list(DEFAULT_TARGETS))).train()
        if args.what == "mntp":
            T = inputs.shape[1]
            bidirectional = torch.zeros(len(inputs), 1, T, T)  # a 4-D mask that hides nothing

            def loss():
                return model(input_ids=inputs, attention_mask=bidirectional, labels=labels).loss
        else:
            ids, am, pm = (torch.cat([t, t]) for t in (batch.input_ids, batch.attention_mask, batch.pool_mask))
            T = ids.shape[1]
            padding_only = ((1.0 - am[:, None, None, :].float()) * torch.finfo(torch.float32).min).expand(-1, 1, T, T)

            def loss():
                h = model.base_model.model.model(input_ids=ids, attention_mask=padding_only).last_hidden_state
                m = pm[..., None].float()
                return contrastive_loss(*((h * m).sum(1) / m.sum(1)).chunk(2))

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for _ in range(args.steps + 1):  # the first is a warm-up
        t = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=args.autocast):  # fp32 weights, bf16 matmuls
            value = loss()
        value.backward()
        del value  # its graph would otherwise live through the next step's forward
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    print(json.dumps({"s_per_step": min(times[1:]), "peak_gib": peak}))


def bench_training(args):
    """Both implementations in fp32, then both with bf16 autocast (fp32 weights and LoRA, bf16
    matmuls — fast on CPUs with AVX-512 BF16), each in a fresh process."""
    results = {}
    for autocast in (False, True):
        for impl in ("l2v", "hf"):
            cmd = [sys.executable, __file__, args.what, "--worker", "--impl", impl, "--model", args.model,
                   "--threads", str(args.threads), "--batch-size", str(args.batch_size), "--max-length",
                   str(args.max_length), "--steps", str(args.steps)] + (["--autocast"] if autocast else [])
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[impl, autocast] = json.loads(out.strip().splitlines()[-1])
    what = "MNTP step" if args.what == "mntp" else "SimCSE step (two views, attention dropout 0.3)"
    native = "native" if native_bf16("cpu") else "NOT native (autocast rows are slow here)"
    print(f"{what}, {args.batch_size} x {args.max_length} tokens, LoRA r16 on 7 projections (best of {args.steps}); "
          f"bf16 {native}")
    print(f"{'':30} {'l2v s':>7} {'hf s':>7} {'speed-up':>9} {'l2v GiB':>8} {'hf GiB':>7} {'memory':>7}")
    rows = [("fp32 vs fp32", (("l2v", False), ("hf", False))),  # like for like only
            ("autocast vs autocast", (("l2v", True), ("hf", True)))]
    for label, (mine, theirs) in rows:
        a, b = results[mine], results[theirs]
        print(f"{label:30} {a['s_per_step']:7.2f} {b['s_per_step']:7.2f} {b['s_per_step'] / a['s_per_step']:8.2f}x "
              f"{a['peak_gib']:8.2f} {b['peak_gib']:7.2f} {a['peak_gib'] / b['peak_gib']:6.2f}x")


def bench_load(args):
    """Peak resident memory added by load_model, against the bytes of the weights (fresh process)."""
    code = ("import resource, torch, l2v; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            f"m = l2v.load_model({args.model!r}); "
            "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "w = sum(p.numel() * p.element_size() for p in {id(p): p for p in m.parameters()}.values()); "
            "print((peak - before) * 1024, w)")
    added, weights = map(int, subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                             text=True).stdout.split())
    print(f"load_model: weights {weights / 2**20:.0f} MiB, peak resident memory added {added / 2**20:.0f} MiB "
          f"= {added / weights:.2f}x the weights")


# ---------------------------------------------------------------- scale: a Mistral-7B-shaped run on this CPU


def scale_config(args):
    """Mistral-7B's shape (or a smaller one for a smoke test), SmolLM2's vocabulary."""
    from l2v.config import ModelConfig

    src = json.loads((Path(args.model) / "config.json").read_text())
    return ModelConfig(model_type="mistral", vocab_size=l2v.Tokenizer(args.model).vocab_size,
                       hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                       num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, sliding_window=4096,
                       max_position_embeddings=32768, rms_norm_eps=1e-5, bos_token_id=src.get("bos_token_id"),
                       eos_token_id=src.get("eos_token_id"), pad_token_id=src.get("pad_token_id"))


def write_scale_folder(args) -> Path:
    """A random-initialised model folder in HF's layout — bf16 safetensors, one shard per layer and
    an index, the real tokenizer — written one shard at a time (RAM holds one layer, not the model).
    Reused when complete (it is ~15 GB at full size)."""
    from safetensors.torch import save_file

    from l2v.formats.loading import INDEX_FILE
    from l2v.model import Transformer
    from l2v.runtime.files import atomic_folder

    config = scale_config(args)
    name = (f"mistral-shaped-L{config.num_hidden_layers}-h{config.hidden_size}-f{config.intermediate_size}"
            f"-H{config.num_attention_heads}-kv{config.num_key_value_heads}-v{config.vocab_size}")
    folder = Path(args.cache).expanduser() / name
    if (folder / ".complete").is_file():
        print(f"model folder: {folder} (reused)")
        return folder
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in Transformer(config).state_dict().items()}
    groups = [["model.embed_tokens.weight"]]
    groups += [[k for k in shapes if k.startswith(f"model.layers.{i}.")] for i in range(config.num_hidden_layers)]
    groups += [["model.norm.weight", "lm_head.weight"]]
    g = torch.Generator().manual_seed(0)
    weight_map, total = {}, 0
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    with atomic_folder(folder) as tmp:  # interrupted: no half-written 15 GB left behind
        for i, group in enumerate(tqdm(groups, desc="write shards", unit="shard")):
            file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
            shard = {}
            for k in group:
                if len(shapes[k]) == 1:  # RMSNorm weights
                    shard[k] = torch.ones(shapes[k], dtype=torch.bfloat16)
                else:
                    shard[k] = torch.randn(shapes[k], generator=g).mul_(0.02).to(torch.bfloat16)
                weight_map[k] = file
                total += shard[k].numel() * 2
            save_file(shard, str(tmp / file), metadata={"format": "pt"})
            del shard
        (tmp / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                                 indent=1))
        (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(Path(args.model) / f, tmp / f)
        (tmp / ".complete").write_text("")
    print(f"model folder: {folder}, {total / 2**30:.2f} GiB of bf16 weights in {len(groups)} shards, "
          f"written in {time.perf_counter() - t0:.0f} s")
    return folder


def run_measured(cmd: list[str]) -> tuple[float, int, str]:
    """Run a command; → (seconds, peak resident bytes of that process alone, its output)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        out = log.read()
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return time.perf_counter() - t, usage.ru_maxrss * 1024, out


def planned_peak(folder: Path, stage: str, batch: int, length: int) -> tuple[int, str]:
    """`l2v plan --device cpu` for this run → (its total with checkpointing in bytes, its text)."""
    cmd = [sys.executable, "-m", "l2v", "plan", "--config", str(folder), "--stage", stage, "--batch-size", str(batch),
           "--max-length", str(length), "--dtype", "bfloat16", "--device", "cpu"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    total = re.search(r"total, with checkpointing\s+([\d.]+) GiB", out)
    return int(float(total.group(1)) * 2**30), out


LOAD_PROBE = """
import resource, sys, time, torch, l2v
def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096
before = rss()
t = time.perf_counter()
model = l2v.load_model(sys.argv[1], causal=False)
seconds = time.perf_counter() - t
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
params = {id(p): p for p in model.parameters()}.values()
with torch.no_grad():  # read every weight once: the memory-mapped pages become resident
    for p in params:
        p.sum()
touched = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(seconds, loaded, touched, sum(p.numel() * p.element_size() for p in params))
"""


def bench_scale(args):
    """Write the model folder, then drive it through the documented commands only, each in its own
    process (peak resident memory is that process's), each figure beside `l2v plan --device cpu`."""
    folder = write_scale_folder(args)
    work = Path(tempfile.mkdtemp(prefix="runs-", dir=folder.parent))
    try:
        print(f"bf16 compute: {'native' if native_bf16('cpu') else 'no native bf16: weights upcast to fp32 as used'}")
        # Enough MNTP text for the steps' blocks, but under 10 blocks, so no held-out evaluation
        # (a 7B forward pass costs about a minute here); sentences reach --simcse-length tokens.
        lines = sentences(args.mntp_batch * args.steps + 3, words=args.mntp_length)
        (work / "text.txt").write_text("\n".join(lines) + "\n")
        lines = sentences(args.simcse_batch, words=args.simcse_length, seed=1)
        (work / "sentences.txt").write_text("\n".join(lines) + "\n")
        rows = []

        seconds, _, out = run_measured([sys.executable, "-c", LOAD_PROBE, str(folder)])
        load_s, loaded, touched, weights = (float(x) for x in out.split()[-4:])
        rows.append(("weights", f"{weights / 2**30:.2f} GiB", "", ""))
        rows.append(("load_model", f"{load_s:.1f} s; peak RSS +{loaded / 2**30:.2f} GiB", "",
                     f"{loaded / weights:.2f}x weights"))
        ok = "ok" if touched <= 1.2 * weights else "OVER 1.2x"
        rows.append(("  after reading every weight", f"peak RSS +{touched / 2**30:.2f} GiB", "",
                     f"{touched / weights:.2f}x weights ({ok})"))

        seconds, peak, out = run_measured([sys.executable, "-m", "l2v", "encode", "--model", str(folder), "--input",
                                           str(work / "sentences.txt"), "--output", str(work / "emb.npy"),
                                           "--device", "cpu", "--batch-size", "8"])
        enc_s = float(re.search(r"in ([\d.]+) s", out.strip().splitlines()[-1]).group(1))
        rows.append((f"l2v encode ({args.simcse_batch} sentences)", f"{enc_s:.1f} s (+ load: {seconds:.0f} s in all); "
                     f"peak RSS {peak / 2**30:.2f} GiB", "", f"{peak / weights:.2f}x weights"))

        plans = []
        for stage, batch, length in (("mntp", args.mntp_batch, args.mntp_length),
                                     ("simcse", args.simcse_batch, args.simcse_length)):
            est, text = planned_peak(folder, stage, batch, length)
            plans.append(text)
            out_dir = work / stage
            data = work / ("text.txt" if stage == "mntp" else "sentences.txt")
            cmd = [sys.executable, "-m", "l2v", stage, "--model", str(folder), "--data", str(data), "--out", str(out_dir),
                   "--steps", str(args.steps), "--batch-size", str(batch), "--max-length", str(length),
                   "--dtype", "bfloat16", "--gradient-checkpointing", "--device", "cpu", "--save-every", "0"]
            if stage == "simcse":
                cmd += ["--adapter", str(work / "mntp")]  # the recipe: MNTP merged, then SimCSE
            seconds, peak, out = run_measured(cmd)
            steps = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
            step_s = min(r["seconds"] for r in steps if "seconds" in r)
            ratio = est / peak
            verdict = "ok" if 0.8 <= ratio <= 1.2 else "OUTSIDE ±20%"
            rows.append((f"l2v {stage} {batch} x {length}, {args.steps} steps",
                         f"{step_s:.1f} s/step ({seconds:.0f} s in all); peak RSS {peak / 2**30:.2f} GiB",
                         f"plan {est / 2**30:.2f} GiB", f"plan/measured {ratio:.2f} ({verdict})"))
        print("\n".join(plans))
        print(f"{'':38} {'measured':54} {'l2v plan --device cpu':22} check")
        for row in rows:
            print(f"{row[0]:38} {row[1]:54} {row[2]:22} {row[3]}")
    finally:
        shutil.rmtree(work)  # this run's adapters and logs (the model folder is kept for the next run)


def gemm_rate(M: int, K: int, N: int, dtype, repeats: int = 5) -> float:
    """GFLOP/s of (M, K) @ (K, N) as the model runs it (F.linear with a (N, K) weight)."""
    x, w = torch.randn(M, K, dtype=dtype), torch.randn(N, K, dtype=dtype)
    seconds = timed(lambda: [torch.nn.functional.linear(x, w) for _ in range(repeats)], repeats=2) / repeats
    return 2 * M * K * N / seconds / 1e9


def forward_flops(cfg, tokens: int, T: int) -> float:
    """Matmul FLOPs of one forward pass over `tokens` tokens in rows of length T: every projection
    (2 FLOPs per weight per token) and attention's two T×T products (the full square: SDPA with a
    mask computes every score). Norms, rotary and activations are not matmuls and are not counted."""
    hd, H, KV, D, I = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size, \
        cfg.intermediate_size
    per_token = 2 * (D * H * hd + 2 * D * KV * hd + H * hd * D + 3 * D * I) + 4 * T * H * hd
    return tokens * cfg.num_hidden_layers * per_token


def forward_rate(cfg, dtype) -> tuple[float, dict]:
    """GFLOP/s of a forward pass's projections at 1024 tokens: each of the model's matmul shapes
    timed, weighted by its share of the FLOPs (a harmonic mean). → (rate, {shape: GFLOP/s})."""
    hd, H, KV, D, I = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size, \
        cfg.intermediate_size
    shapes = {"q/o": (D, H * hd), "k/v": (D, KV * hd), "gate/up": (D, I), "down": (I, D)}
    weights = {"q/o": 2 * D * H * hd, "k/v": 2 * D * KV * hd, "gate/up": 2 * D * I, "down": I * D}
    r = {name: gemm_rate(1024, k, n, dtype) for name, (k, n) in shapes.items()}
    return sum(weights.values()) / sum(weights[n] / r[n] for n in r), r


def bench_gemm(args):
    """This CPU's matrix-multiply limit at the model's own shapes, and how close l2v's fp32 encode
    and training steps come to it (achieved FLOP/s ÷ the GEMM rate)."""
    cfg = l2v.ModelConfig.from_json(Path(args.model) / "config.json")
    native = native_bf16("cpu")
    dtypes = [torch.float32] + ([torch.bfloat16] if native else [])
    rates = {}
    print(f"GEMM at {cfg.num_hidden_layers}-layer {cfg.hidden_size}-wide shapes, 1024 tokens (GFLOP/s):")
    for dtype in dtypes:
        rates[dtype], r = forward_rate(cfg, dtype)
        print(f"  {str(dtype).removeprefix('torch.'):9} " + "  ".join(f"{n} {v:6.1f}" for n, v in r.items())
              + f"  → forward pass {rates[dtype]:6.1f}")
    limit = rates[torch.float32] * 1e9
    rows = []
    # fp32 encode: short sentences, and 512-token texts (attention's T² share grows with T)
    enc = l2v.Encoder.from_pretrained(args.model, causal=False)
    for label, texts in (("encode sentences", sentences(256)), ("encode 512-token texts", sentences(16, words=500))):
        lens = [min(len(x), 512) for x in enc.tokenizer.encode_batch(texts)]
        seconds = timed(lambda: enc.encode(texts, batch_size=32 if len(texts) > 16 else 8, show_progress_bar=False))
        flops = sum(forward_flops(cfg, n, n) for n in lens)
        rows.append((label, sum(lens) / seconds, flops / seconds))
    # training steps (fresh processes, as bench mntp/simcse): frozen base → forward + input-gradient
    # backward ≈ 2 forward passes of matmuls; the LoRA branches and the MNTP head are left out
    # (a few per cent), so the fractions are slight underestimates.
    for what, B, T in (("mntp", 8, 128), ("simcse", 16, 64)):
        cmd = [sys.executable, __file__, what, "--worker", "--impl", "l2v", "--model", args.model, "--threads",
               str(args.threads), "--batch-size", str(B), "--max-length", str(T), "--steps", "2"]
        step = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        tokens = B * T * (2 if what == "simcse" else 1)  # SimCSE: two views of every sentence
        flops = 2 * forward_flops(cfg, tokens, T)
        rows.append((f"{what} step {B} x {T}", tokens / step["s_per_step"], flops / step["s_per_step"]))
    print(f"fp32, {torch.get_num_threads()} threads; limit = the forward pass's GEMM rate above")
    print(f"{'workload':26} {'tokens/s':>9} {'GFLOP/s':>8} {'of limit':>9}")
    for label, tok_s, flop_s in rows:
        print(f"{label:26} {tok_s:9.0f} {flop_s / 1e9:8.1f} {flop_s / limit:8.0%}")


def suite_lengths(tokenizer, folders) -> list[int]:
    """Token counts of every distinct text a suite embeds (each task's texts once, cut at 512)."""
    from l2v.runtime.files import read_jsonl

    lengths = []
    for folder in folders:
        texts = set()
        for path in sorted(folder.glob("*.jsonl")):
            for row in read_jsonl(path, {}):
                texts.update(row[k] for k in ("sentence1", "sentence2", "text", "query") if k in row)
                texts.update(row.get("positive", []) + row.get("negative", []))
        lengths += [min(len(ids), 512) for ids in tokenizer.encode_batch(sorted(texts))]
    return lengths


def bench_floor(args):
    """The least time each `l2v demo` budget can take on this CPU: every matmul FLOP of its training
    and its evaluations, run at this CPU's fp32 GEMM rate (or --rate). Nothing else is counted —
    no padding, norms, attention softmax, optimizer, data or Python — so it is a floor, not a
    forecast: where the floor is above a time goal, no implementation on this CPU meets that goal."""
    from l2v.data import read_sentences
    from l2v.settings import PRESETS, resolve
    from l2v.sources.suites import build_suite
    from l2v.tools.demo import BUDGETS

    cfg = l2v.ModelConfig.from_json(Path(args.model) / "config.json")
    tokenizer = l2v.Tokenizer(args.model)
    D = cfg.hidden_size
    if args.rate:
        rate, source = args.rate, "given with --rate"
    else:
        rate, source = forward_rate(cfg, torch.float32)[0], "measured here (bench.py gemm)"
    sentence_lengths = [min(len(ids), PRESETS["simcse"]["cpu"].max_length)
                        for ids in tokenizer.encode_batch(read_sentences("wiki"))]
    mean_sentence = sum(sentence_lengths) / len(sentence_lengths)
    print(f"fp32 GEMM rate {rate:.1f} GFLOP/s, {source}; {torch.get_num_threads()} threads; "
          f"native bf16: {native_bf16('cpu')}")
    print(f"{'budget':7} {'suite':15} {'train TFLOP':>11} {'eval TFLOP':>10} {'floor: train':>12} {'eval':>6} "
          f"{'total min':>9}")
    for name in ("quick", "cpu", "long"):
        spec = BUDGETS[name]
        m, c = resolve("mntp", **spec["mntp"]), resolve("simcse", **spec["simcse"])
        mntp_tokens = m.steps * m.batch_size * m.max_length
        # frozen base: forward + the input-gradient backward ≈ 2 forwards; MNTP's head on the masked 20 %
        train = 2 * forward_flops(cfg, mntp_tokens, m.max_length) + 2 * 2 * D * cfg.vocab_size * 0.2 * mntp_tokens
        simcse_tokens = c.steps * c.batch_size * 2 * mean_sentence  # two views; the ablation trains it again
        train += 2 * 2 * forward_flops(cfg, simcse_tokens, round(mean_sentence))
        folders = build_suite(name=spec["suite"])
        # one causal pass for the three Uni rows, then Bi, Bi + MNTP, + SimCSE, SimCSE alone
        evaluate = 5 * sum(forward_flops(cfg, n, n) for n in suite_lengths(tokenizer, folders))
        t_train, t_eval = train / rate / 1e9 / 60, evaluate / rate / 1e9 / 60
        print(f"{name:7} {spec['suite']:15} {train / 1e12:11.1f} {evaluate / 1e12:10.1f} {t_train:12.1f} "
              f"{t_eval:6.1f} {t_train + t_eval:9.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["encode", "mntp", "simcse", "load", "scale", "gemm", "floor"])
    parser.add_argument("--rate", type=float, default=None, help="floor: an fp32 GEMM rate in GFLOP/s (default: measure)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="weights/smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--impl", choices=["l2v", "hf"])
    parser.add_argument("--autocast", action="store_true", help=argparse.SUPPRESS)
    scale = parser.add_argument_group("scale (defaults: Mistral-7B's shape; ~15 GB of disk, ~16 GB of RAM)")
    scale.add_argument("--layers", type=int, default=32)
    scale.add_argument("--hidden", type=int, default=4096)
    scale.add_argument("--intermediate", type=int, default=14336)
    scale.add_argument("--heads", type=int, default=32)
    scale.add_argument("--kv-heads", type=int, default=8)
    scale.add_argument("--cache", default="~/.cache/l2v-bench", help="where the model folder is written (kept)")
    scale.add_argument("--mntp-batch", type=int, default=2)
    scale.add_argument("--mntp-length", type=int, default=128)
    scale.add_argument("--simcse-batch", type=int, default=4)
    scale.add_argument("--simcse-length", type=int, default=64)
    args = parser.parse_args()
    if args.what == "scale":
        args.steps = 2
    torch.set_num_threads(args.threads)
    if args.worker:
        return step_worker(args)
    native = native_bf16("cpu")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, native bf16 (AVX-512 BF16): {'yes' if native else 'no'}")
    {"encode": bench_encode, "mntp": bench_training, "simcse": bench_training, "load": bench_load,
     "scale": bench_scale, "gemm": bench_gemm, "floor": bench_floor}[args.what](args)


if __name__ == "__main__":
    main()
