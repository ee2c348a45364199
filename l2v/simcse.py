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

import torch
import torch.nn.functional as F

from . import distributed
from .checks import L2VError
from .contrastive import contrastive_loss
from .data import read_sentences
from .encoder import Encoder
from .gradcache import embed_in_chunks
from .settings import SimCSESettings, resolve
from .stage import run_stage
from .tokenizer import Batch, Tokenizer
from .train import EpochSampler, Stage


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


def run_simcse(model_dir, adapter, data, out_dir, settings: SimCSESettings | None = None, *, preset: str = "cpu",
               device=None, dtype=None, resume: bool = False, overwrite: bool = False, **overrides) -> list[dict]:
    """The whole SimCSE stage on top of the MNTP `adapter` (None: straight after step 1, the paper's
    ablation). settings.chunk_size: GradCache (gradcache.py), the batch's exact loss and gradient with
    the memory of chunk_size sentences — a batch beyond what fits, with all its in-batch negatives."""
    s = resolve("simcse", settings, preset, **overrides)

    def read():
        sentences = read_sentences(data)
        held_out = sentences[:64]  # for alignment/uniformity; kept out of training when there is plenty
        if len(sentences) > 128:
            sentences = sentences[64:]
        if len(set(sentences)) < s.batch_size:  # a batch would hold a sentence twice: its own negative
            raise L2VError(f"{data} has {len(set(sentences))} distinct sentences, fewer than the batch size "
                           f"{s.batch_size}; lower --batch-size or add text")
        return sentences, held_out

    def setup(model, tokenizer: Tokenizer, data) -> Stage:
        sentences, held_out = data
        encoder = Encoder(model, tokenizer, pooling="mean", max_length=s.max_length)
        print(f"SimCSE data: {len(sentences)} sentences; attention dropout {s.attention_dropout}, batch "
              f"{s.batch_size} (each sentence twice), max length {s.max_length}"
              + (f"; GradCache, {s.chunk_size} sentences per pass" if s.chunk_size else ""))
        sampler = EpochSampler(len(sentences), s.batch_size, s.grad_accum, s.seed)
        eval_batch = tokenizer(held_out, max_length=s.max_length).to(encoder.device)

        def batch(step, micro):  # with torchrun, each process embeds its slice of the global batch
            rows = distributed.shard(sampler.indices(step, micro))
            return tokenizer([sentences[i] for i in rows], max_length=s.max_length)

        def loss(model, batch):
            batch = batch.to(encoder.device)
            views = two_views(encoder, batch, s.chunk_size)
            a, b = (distributed.gather_with_grad(v) for v in views)  # negatives from every process
            return contrastive_loss(a, b, scale=20.0), {"tokens": 2 * int(batch.attention_mask.sum())}

        return Stage(batch=batch, loss=loss, evaluate=lambda model: alignment_uniformity(encoder, eval_batch))

    return run_stage("SimCSE", read, setup, model_dir, out_dir, s, adapter=adapter,
                     attention_dropout=s.attention_dropout, inputs=dict(data=str(data)), device=device, dtype=dtype,
                     resume=resume, overwrite=overwrite)
