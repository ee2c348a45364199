"""Benchmarks: l2v against transformers (+ peft) on the same converted folder, same inputs, one run.

    python tests/bench.py encode [--model weights/smollm2-135m-instruct] [--threads 2]

Not a test (pytest does not collect it): speed goals live here, with numbers printed side by side.
"""

from __future__ import annotations

import argparse
import platform
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
        rows.append((str(dtype).removeprefix("torch."), n_tokens / ours, n_tokens / theirs))
    print(f"encode {len(texts)} sentences ({n_tokens} tokens, batch 32, causal, mean pooling)")
    print(f"{'dtype':10} {'l2v tok/s':>10} {'hf tok/s':>10} {'ratio':>6}")
    for dtype, a, b in rows:
        print(f"{dtype:10} {a:10.0f} {b:10.0f} {a / b:6.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["encode"])
    parser.add_argument("--model", default="weights/smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    {"encode": bench_encode}[args.what](args)


if __name__ == "__main__":
    main()
