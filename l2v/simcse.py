"""LLM2Vec step 3: unsupervised SimCSE (Gao et al., 2021).

MNTP taught the tokens to use bidirectional attention; SimCSE teaches the *pooled* vector to
stand for the sentence. Each sentence goes through the model twice in training mode. Dropout —
on the attention probabilities (p = 0.3) and in the LoRA branches — makes the two passes differ
slightly, so the pair (view 1, view 2) of one sentence is a positive and every other sentence in
the batch is a negative. The loss asks each first view to pick out its own second view.

Starting point, as in the official recipe: the MNTP adapter merged into the base, then a fresh
LoRA. The paper: batch 128, max length 128, lr 3e-5, 1000 steps, dropout 0.3.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F

from . import distributed
from .encoder import Encoder
from .gradcache import embed_in_chunks
from .loading import load_model
from .lora import apply_lora, merge_adapters, trainable_summary
from .tokenizer import Batch, Tokenizer
from .checks import L2VError, check_args
from .files import read_lines
from .train import EpochSampler, check_out_dir, resolve_settings, train

PRESETS = {
    "paper": dict(steps=1000, batch_size=128, grad_accum=1, max_length=128, lr=3e-5, warmup_steps=0, save_every=200,
                  dropout=0.3),
    # Minutes on a 2-core CPU with SmolLM2-135M. A higher lr than the paper's: at 3e-5 nothing
    # moves in a few dozen steps.
    "cpu": dict(steps=40, batch_size=16, grad_accum=1, max_length=64, lr=3e-4, warmup_steps=4, save_every=20,
                dropout=0.3),
}


def contrastive_loss(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None,
                     scale: float = 20.0) -> torch.Tensor:
    """InfoNCE with in-batch negatives, one direction (as the official LLM2Vec code).

    anchors, positives (B, D); optional hard negatives (B, D) join the candidates. Row i of the
    score matrix holds anchor i's cosine similarity to every candidate, × scale (= 1/temperature;
    20 ↔ 0.05); the right answer for row i is candidate i.
    """
    if anchors.shape[0] < 2:
        raise ValueError("a contrastive loss needs at least 2 examples in a batch (in-batch negatives)")
    candidates = positives if negatives is None else torch.cat([positives, negatives])  # (B or 2B, D)
    scores = F.normalize(anchors, dim=-1) @ F.normalize(candidates, dim=-1).T * scale  # (B, B or 2B)
    target = torch.arange(anchors.shape[0], device=anchors.device)  # positives sit on the diagonal
    return F.cross_entropy(scores.float(), target)


def split_sentences(paragraph: str) -> list[str]:
    """A plain splitter: end punctuation, a space, then a capital letter or a quote."""
    return [s.strip() for s in re.split(r'(?<=[.!?])\s+(?=[A-Z"“])', paragraph) if s.strip()]


def read_sentences(source, min_words: int = 5, max_words: int = 64) -> list[str]:
    """'wiki' → Wikipedia sentences (split from the MNTP text); otherwise a file, one sentence a line."""
    if str(source) == "wiki":
        from .mntp import read_texts

        sentences = [s for p in read_texts("wiki") for s in split_sentences(p)
                     if min_words <= len(s.split()) <= max_words]
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        sentences = [line.strip() for line in read_lines(path) if line.strip()]
    if len(sentences) < 2:
        raise ValueError(f"{source} has {len(sentences)} sentence(s); contrastive training needs at least 2")
    return sentences


def two_views(encoder: Encoder, batch: Batch, chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed every sentence twice in one forward pass: the batch stacked on itself. In training
    mode each row draws its own dropout masks, so row i and row B + i are two different views.
    chunk_size: GradCache (gradcache.py) — the same views, chunk_size sentences' worth of rows
    (2 · chunk_size sequences) through the model at a time."""
    doubled = Batch(*(torch.cat([t, t]) for t in (batch.input_ids, batch.attention_mask, batch.pool_mask)))
    if chunk_size is None:
        views = encoder.embed(doubled)  # (2B, D)
    else:
        views = embed_in_chunks(encoder.embed, doubled, 2 * chunk_size)  # (2B, D)
    return views.chunk(2)


def alignment(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Wang & Isola (2020): E‖f(x) − f(x⁺)‖² over unit vectors a, b (N, D) of positive pairs.
    Lower: the two views of a sentence agree."""
    return (a - b).pow(2).sum(-1).mean()


def uniformity(x: torch.Tensor) -> torch.Tensor:
    """Wang & Isola (2020): log E exp(−2‖f(x) − f(y)‖²) over all pairs of distinct unit vectors x (N, D).
    Lower: the embeddings spread over the sphere instead of crowding in a cone."""
    return torch.pdist(x).pow(2).mul(-2).exp().mean().log()


@torch.no_grad()
def alignment_uniformity(encoder: Encoder, batch: Batch) -> dict:
    """Alignment and uniformity of two dropout views of held-out sentences, plus in-batch accuracy."""
    model = encoder.model
    was_training = model.training
    model.train()  # dropout on: that is what makes the views
    with torch.random.fork_rng(devices=[batch.input_ids.device] if batch.input_ids.is_cuda else []):
        torch.manual_seed(0)  # the same dropout masks at every eval, and training's RNG untouched
        a, b = (F.normalize(v.float(), dim=-1) for v in two_views(encoder, batch))
    model.train(was_training)
    accuracy = ((a @ b.T).argmax(-1) == torch.arange(len(a), device=a.device)).float().mean().item()
    return {"alignment": alignment(a, b).item(), "uniformity": uniformity(a).item(), "accuracy": accuracy}


def prepare_encoder(model_dir, adapter, *, dropout: float, lora_r: int, lora_alpha: float, lora_dropout: float,
                    max_length: int, seed: int, device=None, dtype=None) -> Encoder:
    """Bidirectional model + merged MNTP adapter (if any) + a fresh LoRA, wrapped as a mean-pooling Encoder."""
    if adapter is not None and not Path(adapter).is_dir():
        raise FileNotFoundError(f"MNTP adapter folder not found: {adapter} (train one with `l2v mntp`)")
    model = load_model(model_dir, dtype=dtype, device=device, causal=False)
    if adapter is not None:
        merge_adapters(model, [adapter])
    model.set_attention_dropout(dropout)
    torch.manual_seed(seed)  # the fresh LoRA's A matrices
    apply_lora(model, r=lora_r, alpha=lora_alpha, dropout=lora_dropout)
    print(trainable_summary(model))
    return Encoder(model, Tokenizer(model_dir), pooling="mean", max_length=max_length)


def run_simcse(model_dir, adapter, data, out_dir, *, preset: str = "cpu", steps=None, batch_size=None,
               grad_accum=None, max_length=None, lr=None, dropout=None, seed: int = 42, device=None, dtype=None,
               lora_r: int = 16, lora_alpha: float = 32, lora_dropout: float = 0.05, eval_every=None,
               save_every=None, gradient_checkpointing: bool = False, autocast=None,
               resume: bool = False, overwrite: bool = False,
               chunk_size: int | None = None) -> list[dict]:
    """chunk_size: GradCache (gradcache.py), the batch's exact loss and gradient with the memory of
    chunk_size sentences — a batch beyond what fits, with all its in-batch negatives."""
    cfg, extra = resolve_settings(PRESETS, preset, steps=steps, batch_size=batch_size, grad_accum=grad_accum,
                                  lr=lr, eval_every=eval_every, save_every=save_every, max_length=max_length,
                                  dropout=dropout, seed=seed, gradient_checkpointing=gradient_checkpointing,
                                  autocast_bf16=autocast, chunk_size=chunk_size)
    chunk_size = extra.get("chunk_size")
    if cfg.batch_size < 2:
        raise ValueError("--batch-size must be at least 2: the other sentences in the batch are the negatives")
    check_args(dropout=extra["dropout"], lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
               chunk_size=chunk_size)
    check_out_dir(out_dir, resume, overwrite)
    distributed.init()
    sentences = read_sentences(data)
    encoder = prepare_encoder(model_dir, adapter, dropout=extra["dropout"], lora_r=lora_r, lora_alpha=lora_alpha,
                              lora_dropout=lora_dropout, max_length=extra["max_length"], seed=seed,
                              device=device, dtype=dtype)
    held_out = sentences[:64]  # for alignment/uniformity; kept out of training when there is plenty
    if len(sentences) > 128:
        sentences = sentences[64:]
    print(f"SimCSE data: {len(sentences)} sentences; attention dropout {extra['dropout']}, "
          f"batch {cfg.batch_size} (each sentence twice), max length {extra['max_length']}"
          + (f"; GradCache, {chunk_size} sentences per pass" if chunk_size else ""))
    if len(set(sentences)) < cfg.batch_size:  # a batch would hold a sentence twice: its own negative
        raise L2VError(f"{data} has {len(set(sentences))} distinct sentences, fewer than the batch size "
                       f"{cfg.batch_size}; lower --batch-size or add text")
    sampler = EpochSampler(len(sentences), cfg.batch_size, cfg.grad_accum, seed)
    tk, dev = encoder.tokenizer, encoder.device
    eval_batch = tk(held_out, max_length=extra["max_length"]).to(dev)

    def batch_fn(step, micro):  # with torchrun, each process embeds its slice of the global batch
        rows = distributed.shard(sampler.indices(step, micro))
        return tk([sentences[i] for i in rows], max_length=extra["max_length"])

    def loss_fn(model, batch):
        batch = batch.to(dev)
        views = two_views(encoder, batch, chunk_size)
        a, b = (distributed.gather_with_grad(v) for v in views)  # negatives from every process
        return contrastive_loss(a, b, scale=20.0), {"tokens": 2 * int(batch.attention_mask.sum())}

    return train(encoder.model, loss_fn=loss_fn, batch_fn=batch_fn, cfg=cfg, out_dir=out_dir,
                 eval_fn=lambda model: alignment_uniformity(encoder, eval_batch), resume=resume, desc="SimCSE",
                 base_model=str(model_dir), overwrite=overwrite,
                 settings=dict(max_length=extra["max_length"], dropout=extra["dropout"], data=str(data),
                               adapter=adapter and str(adapter)))
