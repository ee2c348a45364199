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

from .contrastive import contrastive_loss, matryoshka, nested_dims
from .data import EpochSampler, read_sentences
from .encoder import Encoder
from .gradcache import embed_in_chunks
from .runtime import distributed
from .runtime.checkpoints import RunFolder
from .runtime.checks import L2VError
from .settings import SimCSESettings, resolve
from .tokenizer import Batch, Tokenizer
from .train import Pieces, Stage, mode, prepare_model, train


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
    with mode(encoder.model, training=True):  # dropout on: that is what makes the views
        with torch.random.fork_rng(devices=[batch.input_ids.device] if batch.input_ids.is_cuda else []):
            torch.manual_seed(0)  # the same dropout masks at every eval, and training's RNG untouched
            a, b = (F.normalize(v.float(), dim=-1) for v in two_views(encoder, batch))
    accuracy = ((a @ b.T).argmax(-1) == torch.arange(len(a), device=a.device)).float().mean().item()
    return {"alignment": alignment(a, b).item(), "uniformity": uniformity(a).item(), "accuracy": accuracy}


def read_simcse_sentences(data, batch_size: int) -> tuple[list[str], list[str]]:
    """(training sentences, 64 held out for alignment/uniformity): kept out of training when there is plenty."""
    sentences = read_sentences(data)
    held_out = sentences[:64]
    if len(sentences) > 128:
        sentences = sentences[64:]
    if len(set(sentences)) < batch_size:  # a batch would hold a sentence twice: its own negative
        raise L2VError(f"{data} has {len(set(sentences))} distinct sentences, fewer than the batch size "
                       f"{batch_size}; lower --batch-size or add text")
    return sentences, held_out


class SimCSEData:
    """The stage's own part of training (train.Stage): batches of sentences, the loss of their two
    views, and alignment/uniformity on the held-out ones."""

    def __init__(self, encoder: Encoder, sentences: list[str], held_out: list[str], s: SimCSESettings, loss=None):
        self.encoder, self.sentences, self.s = encoder, sentences, s
        self.sampler = EpochSampler(len(sentences), s.batch_size, s.grad_accum, s.seed)
        self.eval_batch = encoder.tokenizer(held_out, max_length=s.max_length).to(encoder.device)
        # train.Pieces.contrastive_loss if one is handed in; over nested sizes with --matryoshka
        self.loss_fn = matryoshka(loss or contrastive_loss, nested_dims(encoder.dim, s.matryoshka))

    def batch(self, step: int, micro: int) -> Batch:  # with torchrun, each process embeds its slice of the batch
        rows = distributed.shard(self.sampler.indices(step, micro))
        return self.encoder.tokenizer([self.sentences[i] for i in rows], max_length=self.s.max_length)

    def loss(self, model, batch: Batch):
        batch = batch.to(self.encoder.device)
        views = two_views(self.encoder, batch, self.s.chunk_size)
        a, b = (distributed.gather_with_grad(v) for v in views)  # negatives from every process
        return self.loss_fn(a, b, scale=20.0), {"tokens": 2 * int(batch.attention_mask.sum())}

    def evaluate(self, model) -> dict:
        return alignment_uniformity(self.encoder, self.eval_batch)


def run_simcse(model_dir, adapter, data, out_dir, settings: SimCSESettings | None = None, *, preset: str = "cpu",
               device=None, dtype=None, resume: bool = False, overwrite: bool = False, pieces: Pieces | None = None,
               **overrides) -> list[dict]:
    """The whole SimCSE stage on top of the MNTP `adapter` (None: straight after step 1, the paper's
    ablation) → the log records; the adapter lands in out_dir. settings.chunk_size: GradCache
    (gradcache.py), the batch's exact loss and gradient with the memory of chunk_size sentences — a
    batch beyond what fits, with all its in-batch negatives. pieces: your own (train.Pieces)."""
    s = resolve("simcse", settings, preset, **overrides)
    pieces = (pieces or Pieces()).check("SimCSE", ("attention_mask", "lora_layer", "pool", "contrastive_loss"))
    run = RunFolder(out_dir, resume, overwrite)  # before minutes of loading, not after
    sentences, held_out = read_simcse_sentences(data, s.batch_size)
    distributed.init()  # with torchrun, one process per GPU
    model = prepare_model(model_dir, s.lora, s.seed, adapter=adapter, attention_dropout=s.attention_dropout,
                          device=device, dtype=dtype, pieces=pieces)
    encoder = Encoder(model, Tokenizer(model_dir), pooling="mean", max_length=s.max_length, pool_fn=pieces.pool)
    print(f"SimCSE data: {len(sentences)} sentences; attention dropout {s.attention_dropout}, batch "
          f"{s.batch_size} (each sentence twice), max length {s.max_length}"
          + (f"; GradCache, {s.chunk_size} sentences per pass" if s.chunk_size else ""))
    stage = SimCSEData(encoder, sentences, held_out, s, loss=pieces.contrastive_loss)
    inputs = dict(data=str(data), base_model=str(model_dir), adapter=adapter and str(adapter))
    return train(model, Stage(stage.batch, stage.loss, stage.evaluate), s, run, name="SimCSE", inputs=inputs)
