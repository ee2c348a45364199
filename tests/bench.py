"""Benchmarks: l2v against transformers (+ peft) on the same converted folder, same inputs, one run.

    python tests/bench.py encode [--model weights/smollm2-135m-instruct] [--threads 2]
    python tests/bench.py mntp   [--batch-size 16 --max-length 128 --steps 3]   # fp32, and bf16 autocast
    python tests/bench.py simcse [--batch-size 16 --max-length 128 --steps 3]
    python tests/bench.py load                                     # peak memory of load_model

Training steps run each implementation in a fresh subprocess, so peak resident memory
(ru_maxrss) belongs to that implementation alone.

Not a test (pytest does not collect it): speed goals live here, with numbers printed side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch

import l2v

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
    hf_tok_s = {}
    for dtype in (torch.float32, torch.bfloat16):
        enc = l2v.Encoder.from_pretrained(args.model, causal=True, dtype=dtype)
        tk = enc.tokenizer
        n_tokens = sum(len(tk.encode(t)) for t in texts)
        ours = timed(lambda: enc.encode(texts, batch_size=32, show_progress_bar=False))

        hf = transformers.AutoModel.from_pretrained(args.model, dtype=dtype).eval()

        def hf_encode():
            with torch.inference_mode():
                for s in range(0, len(texts), 32):
                    b = tk(texts[s : s + 32])  # same ids, left padding, in input order
                    h = hf(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
                    m = b.pool_mask[..., None].to(h.dtype)
                    (h * m).sum(1) / m.sum(1)

        theirs = timed(hf_encode)
        hf_tok_s[dtype] = n_tokens / theirs
        rows.append((str(dtype).removeprefix("torch."), n_tokens / ours, n_tokens / theirs))
    # fp32 weights, matmuls in bf16 (Encoder(autocast=True)); compared with transformers in fp32
    enc = l2v.Encoder.from_pretrained(args.model, causal=True, autocast=True)
    ours = timed(lambda: enc.encode(texts, batch_size=32, show_progress_bar=False))
    rows.append(("fp32+autocast", n_tokens / ours, hf_tok_s[torch.float32]))
    print(f"encode {len(texts)} sentences ({n_tokens} tokens, batch 32, causal, mean pooling)")
    print(f"{'dtype':14} {'l2v tok/s':>10} {'hf tok/s':>10} {'ratio':>6}")
    for dtype, a, b in rows:
        print(f"{dtype:14} {a:10.0f} {b:10.0f} {a / b:6.2f}x")


def mntp_batch(tokenizer, batch_size: int, max_length: int):
    from l2v.mntp import FAMILY_MASKING, mask_tokens, pack_blocks, read_texts

    blocks = pack_blocks(tokenizer, read_texts("wiki")[:400], max_length)[:batch_size]
    return mask_tokens(blocks, tokenizer, FAMILY_MASKING["llama"], torch.Generator().manual_seed(0))


def simcse_batch(tokenizer, batch_size: int, max_length: int):
    """batch_size wiki sentences, cut or padded to exactly max_length tokens (left padding)."""
    from l2v.simcse import read_sentences

    ids = [x for x in tokenizer.encode_batch(read_sentences("wiki")[:2000]) if len(x) >= max_length // 2][:batch_size]
    return tokenizer.pad([(x[:max_length], 0) for x in ids])


def step_worker(args):
    """One implementation's training steps, in this (fresh) process; prints a JSON line."""
    from l2v.lora import DEFAULT_TARGETS, apply_lora
    from l2v.mntp import mntp_loss
    from l2v.simcse import contrastive_loss, two_views

    tk = l2v.Tokenizer(args.model)
    torch.manual_seed(0)
    if args.what == "mntp":
        inputs, labels = mntp_batch(tk, args.batch_size, args.max_length)
    else:
        batch = simcse_batch(tk, args.batch_size, args.max_length)
    if args.impl == "l2v":
        model = apply_lora(l2v.load_model(args.model, causal=False), r=16, alpha=32, dropout=0.05).train()
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
    print(f"{what}, {args.batch_size} x {args.max_length} tokens, LoRA r16 on 7 projections (best of {args.steps})")
    print(f"{'':30} {'l2v s':>7} {'hf s':>7} {'speed-up':>9} {'l2v GiB':>8} {'hf GiB':>7} {'memory':>7}")
    rows = [("fp32 vs fp32", (("l2v", False), ("hf", False))),
            ("autocast vs autocast", (("l2v", True), ("hf", True))),
            ("l2v autocast vs hf fp32", (("l2v", True), ("hf", False)))]
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["encode", "mntp", "simcse", "load"])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="weights/smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--impl", choices=["l2v", "hf"])
    parser.add_argument("--autocast", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        return step_worker(args)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    {"encode": bench_encode, "mntp": bench_training, "simcse": bench_training, "load": bench_load}[args.what](args)


if __name__ == "__main__":
    main()
