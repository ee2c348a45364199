"""LLM2Vec step 4 (optional): supervised contrastive training on (query, positive, hard negative).

The stage that took LLaMA-3-8B to 65.01 on MTEB with public data (the E5 mixture). Each row is a
query with an instruction ("Given a question, retrieve passages that answer it"), a relevant
document and a hard negative. The instruction goes on the query only and is left out of pooling,
exactly as in `Encoder.encode`. The loss is SimCSE's, with the hard negatives added to the
candidates and scale 50 (temperature 0.02). When the file mixes datasets, every batch comes from
a single one, as in the official recipe: in-batch negatives from another task would be too easy.
It starts, like SimCSE, from the MNTP adapter merged into the base plus a fresh LoRA.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import distributed
from .contrastive import contrastive_loss
from .encoder import Encoder
from .files import read_jsonl
from .gradcache import embed_in_chunks
from .settings import SupervisedSettings, resolve
from .stage import run_stage
from .tokenizer import Tokenizer
from .train import Stage

FIELDS = ("query", "positive", "negative")


@dataclass(frozen=True)
class Triple:
    query: str
    positive: str
    negative: str
    dataset: str = "default"
    instruction: str = ""


def read_triples(path) -> list[Triple]:
    rows = read_jsonl(path, {k: str for k in FIELDS})
    if len(rows) < 2:
        raise ValueError(f"{path} has {len(rows)} row(s); contrastive training needs at least 2")
    return [Triple(r["query"], r["positive"], r["negative"], str(r.get("dataset", "default")),
                   r.get("instruction") or "") for r in rows]


class DatasetBatches:
    """Deterministic batches that each hold rows of one dataset. Per epoch: shuffle each dataset,
    cut it into full batches, shuffle the batches — all seeded by (seed, epoch)."""

    def __init__(self, datasets: list[str], batch_size: int, grad_accum: int = 1, seed: int = 0):
        self.groups: dict[str, list[int]] = {}
        for i, name in enumerate(datasets):
            self.groups.setdefault(name, []).append(i)
        self.batch_size, self.grad_accum, self.seed = batch_size, grad_accum, seed
        self.per_epoch = sum(len(g) // batch_size for g in self.groups.values())
        if self.per_epoch == 0:
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in self.groups.items())
            raise ValueError(f"no dataset has a full batch of {batch_size} rows ({sizes}); lower --batch-size")
        small = {k: len(v) for k, v in self.groups.items() if len(v) < batch_size}
        if small:  # every batch comes from one dataset, so these rows can never be used
            warnings.warn(f"dataset(s) smaller than one batch of {batch_size} are left out of training: "
                          + ", ".join(f"{k} ({n} rows)" for k, n in small.items()), stacklevel=2)
        self._epoch, self._batches = None, None

    def indices(self, step: int, micro: int) -> list[int]:
        k = step * self.grad_accum + micro
        epoch, position = divmod(k, self.per_epoch)
        if self._epoch != epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            batches = []
            for rows in self.groups.values():
                order = [rows[i] for i in torch.randperm(len(rows), generator=g).tolist()]
                batches += [order[s : s + self.batch_size] for s in range(0, len(order) - self.batch_size + 1,
                                                                           self.batch_size)]
            self._epoch, self._batches = epoch, [batches[i] for i in torch.randperm(len(batches), generator=g)]
        return self._batches[position]


def embed_triples(encoder, triples: list[Triple], chunk_size: int | None = None):
    """One forward pass over queries (with their instructions), positives and negatives → 3 × (B, D).
    chunk_size: GradCache (gradcache.py), chunk_size triples (3 · chunk_size texts) at a time."""
    B = len(triples)
    texts = [t.query for t in triples] + [t.positive for t in triples] + [t.negative for t in triples]
    instructions = [t.instruction for t in triples] + [""] * (2 * B)  # documents carry no instruction
    batch = encoder.tokenize(texts, instructions=instructions).to(encoder.device)
    if chunk_size is None:
        return encoder.embed(batch).chunk(3)
    return embed_in_chunks(encoder.embed, batch, 3 * chunk_size).chunk(3)


def run_supervised(model_dir, adapter, data, out_dir, settings: SupervisedSettings | None = None, *,
                   preset: str = "cpu", device=None, dtype=None, resume: bool = False, overwrite: bool = False,
                   **overrides) -> list[dict]:
    """The supervised stage on top of the MNTP `adapter`. settings.chunk_size: GradCache (gradcache.py),
    the batch's exact loss and gradient with the memory of chunk_size triples — the paper's batch of
    512 on one GPU."""
    s = resolve("supervised", settings, preset, **overrides)

    def read():
        triples = read_triples(data)
        return triples, DatasetBatches([t.dataset for t in triples], s.batch_size, s.grad_accum, s.seed)

    def setup(model, tokenizer: Tokenizer, data) -> Stage:
        triples, batches = data
        encoder = Encoder(model, tokenizer, pooling="mean", max_length=s.max_length)
        print(f"supervised data: {len(triples)} triples in {len(batches.groups)} dataset(s), "
              f"{batches.per_epoch} batches of {s.batch_size} per epoch"
              + (f"; GradCache, {s.chunk_size} triples per pass" if s.chunk_size else ""))
        held_out = triples[: min(64, len(triples))]

        def loss(model, rows):
            q, p, n = embed_triples(encoder, [triples[i] for i in distributed.shard(rows)], s.chunk_size)
            q, p, n = (distributed.gather_with_grad(v) for v in (q, p, n))  # candidates from every process
            return contrastive_loss(q, p, n, scale=50.0), {}

        @torch.no_grad()
        def evaluate(model):
            """How often a held-out query ranks its positive first among all positives and negatives."""
            was_training = model.training
            model.eval()
            q, p, n = embed_triples(encoder, held_out)
            model.train(was_training)
            scores = F.normalize(q, dim=-1) @ F.normalize(torch.cat([p, n]), dim=-1).T
            hits = scores.argmax(-1) == torch.arange(len(q), device=q.device)
            return {"accuracy": hits.float().mean().item(), "loss": contrastive_loss(q, p, n, scale=50.0).item()}

        return Stage(batch=batches.indices, loss=loss, evaluate=evaluate)

    return run_stage("supervised", read, setup, model_dir, out_dir, s, adapter=adapter, attention_dropout=0.0,
                     inputs=dict(data=str(data)), device=device, dtype=dtype, resume=resume, overwrite=overwrite)
