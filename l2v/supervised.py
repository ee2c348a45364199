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

from .contrastive import contrastive_loss, matryoshka, nested_dims
from .data import EpochSampler
from .encoder import Encoder
from .gradcache import embed_in_chunks
from .runtime import distributed
from .runtime.checkpoints import RunFolder
from .runtime.files import read_jsonl
from .settings import SupervisedSettings, resolve
from .tokenizer import Tokenizer
from .train import Pieces, Stage, mode, prepare_model, train

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


class DatasetBatches(EpochSampler):
    """Deterministic batches that each hold rows of one dataset. Per epoch: shuffle each dataset,
    cut it into full batches, shuffle the batches — all seeded by (seed, epoch)."""

    def __init__(self, datasets: list[str], batch_size: int, grad_accum: int = 1, seed: int = 0):
        self.groups: dict[str, list[int]] = {}
        for i, name in enumerate(datasets):
            self.groups.setdefault(name, []).append(i)
        self.per_epoch = sum(len(g) // batch_size for g in self.groups.values())
        if self.per_epoch == 0:
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in self.groups.items())
            raise ValueError(f"no dataset has a full batch of {batch_size} rows ({sizes}); lower --batch-size")
        small = {k: len(v) for k, v in self.groups.items() if len(v) < batch_size}
        if small:  # every batch comes from one dataset, so these rows can never be used
            warnings.warn(f"dataset(s) smaller than one batch of {batch_size} are left out of training: "
                          + ", ".join(f"{k} ({n} rows)" for k, n in small.items()), stacklevel=2)
        super().__init__(len(datasets), batch_size, grad_accum, seed)

    def indices(self, step: int, micro: int) -> list[int]:
        epoch, position = divmod(self.micro_batch(step, micro), self.per_epoch)
        return self.epoch(epoch)[position]

    def shuffle(self, g: torch.Generator) -> list[list[int]]:
        """This epoch's batches: each dataset shuffled and cut into full batches, then the batches shuffled."""
        batches = []
        for rows in self.groups.values():
            order = [rows[i] for i in torch.randperm(len(rows), generator=g).tolist()]
            batches += [order[s : s + self.batch_size] for s in range(0, len(order) - self.batch_size + 1,
                                                                       self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=g)]


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


class SupervisedData:
    """The stage's own part of training (train.Stage): one-dataset batches of triples, their loss,
    and how often a held-out query ranks its positive first."""

    def __init__(self, encoder: Encoder, triples: list[Triple], batches: DatasetBatches, s: SupervisedSettings,
                 loss=None):
        self.encoder, self.triples, self.batches, self.s = encoder, triples, batches, s
        self.held_out = triples[: min(64, len(triples))]
        # train.Pieces.contrastive_loss if one is handed in; over nested sizes with --matryoshka
        self.loss_fn = matryoshka(loss or contrastive_loss, nested_dims(encoder.dim, s.matryoshka))

    def batch(self, step: int, micro: int) -> list[int]:
        return self.batches.indices(step, micro)

    def group(self, step: int) -> str:
        """The dataset of the step's first batch (each batch holds one dataset)."""
        return self.triples[self.batches.indices(step, 0)[0]].dataset

    def loss(self, model, rows: list[int]):
        q, p, n = embed_triples(self.encoder, [self.triples[i] for i in distributed.shard(rows)], self.s.chunk_size)
        q, p, n = (distributed.gather_with_grad(v) for v in (q, p, n))  # candidates from every process
        return self.loss_fn(q, p, n, scale=50.0), {}

    @torch.no_grad()
    def evaluate(self, model) -> dict:
        with mode(model, training=False):
            q, p, n = embed_triples(self.encoder, self.held_out)
        scores = F.normalize(q, dim=-1) @ F.normalize(torch.cat([p, n]), dim=-1).T
        hits = scores.argmax(-1) == torch.arange(len(q), device=q.device)
        return {"accuracy": hits.float().mean().item(), "loss": self.loss_fn(q, p, n, scale=50.0).item()}


def run_supervised(model_dir, adapter, data, out_dir, settings: SupervisedSettings | None = None, *,
                   preset: str = "cpu", device=None, dtype=None, resume: bool = False, overwrite: bool = False,
                   pieces: Pieces | None = None, **overrides) -> list[dict]:
    """The supervised stage on top of the MNTP `adapter` → the log records; the adapter lands in
    out_dir. settings.chunk_size: GradCache (gradcache.py), the batch's exact loss and gradient with
    the memory of chunk_size triples — the paper's batch of 512 on one GPU. pieces: your own (train.Pieces)."""
    s = resolve("supervised", settings, preset, **overrides)
    pieces = (pieces or Pieces()).check("supervised", ("attention_mask", "lora_layer", "pool", "contrastive_loss"))
    run = RunFolder(out_dir, resume, overwrite)  # before minutes of loading, not after
    triples = read_triples(data)
    batches = DatasetBatches([t.dataset for t in triples], s.batch_size, s.grad_accum, s.seed)
    distributed.init()  # with torchrun, one process per GPU
    model = prepare_model(model_dir, s.lora, s.seed, adapter=adapter, attention_dropout=0.0, device=device,
                          dtype=dtype, pieces=pieces)
    encoder = Encoder(model, Tokenizer(model_dir), pooling="mean", max_length=s.max_length, pool_fn=pieces.pool)
    print(f"supervised data: {len(triples)} triples in {len(batches.groups)} dataset(s), "
          f"{batches.per_epoch} batches of {s.batch_size} per epoch"
          + (f"; GradCache, {s.chunk_size} triples per pass" if s.chunk_size else ""))
    stage = SupervisedData(encoder, triples, batches, s, loss=pieces.contrastive_loss)
    inputs = dict(data=str(data), base_model=str(model_dir), adapter=adapter and str(adapter))
    return train(model, Stage(stage.batch, stage.loss, stage.evaluate, stage.group), s, run, name="supervised",
                 inputs=inputs)
