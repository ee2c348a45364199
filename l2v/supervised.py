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

from . import distributed
from .gradcache import embed_in_chunks
from .files import read_jsonl
from .simcse import contrastive_loss, prepare_encoder
from .checks import check_args
from .train import check_out_dir, resolve_settings, train

FIELDS = ("query", "positive", "negative")
PRESETS = {
    # The paper: the E5 mixture, batch 512, lr 2e-4, 1000 steps, max length 512, warmup 300 (on 8
    # GPUs). GradCache in chunks of 64 triples fits it on one 80 GB GPU with gradient checkpointing
    # (`l2v plan`: 55-59 GiB for 7-8B models); with torchrun on 8 GPUs each process's 64 are one chunk.
    "paper": dict(steps=1000, batch_size=512, grad_accum=1, max_length=512, lr=2e-4, warmup_steps=300,
                  save_every=200, chunk_size=64),
    "cpu": dict(steps=20, batch_size=8, grad_accum=1, max_length=64, lr=2e-4, warmup_steps=2, save_every=10),
}


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


def run_supervised(model_dir, adapter, data, out_dir, *, preset: str = "cpu", steps=None, batch_size=None,
                   grad_accum=None, max_length=None, lr=None, seed: int = 42, device=None, dtype=None,
                   lora_r: int = 16, lora_alpha: float = 32, lora_dropout: float = 0.05, eval_every=None,
                   save_every=None, gradient_checkpointing: bool = False, autocast=None,
                   resume: bool = False, overwrite: bool = False,
                   chunk_size: int | None = None) -> list[dict]:
    """chunk_size: GradCache (gradcache.py), the batch's exact loss and gradient with the memory of
    chunk_size triples — the paper's batch of 512 on one GPU."""
    cfg, extra = resolve_settings(PRESETS, preset, steps=steps, batch_size=batch_size, grad_accum=grad_accum,
                                  lr=lr, eval_every=eval_every, save_every=save_every, max_length=max_length,
                                  seed=seed, gradient_checkpointing=gradient_checkpointing,
                                  autocast_bf16=autocast, chunk_size=chunk_size)
    chunk_size = extra.get("chunk_size")
    if cfg.batch_size < 2:
        raise ValueError("--batch-size must be at least 2: the other rows in the batch are the negatives")
    check_args(lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, chunk_size=chunk_size)
    check_out_dir(out_dir, resume, overwrite)
    distributed.init()
    triples = read_triples(data)
    batches = DatasetBatches([t.dataset for t in triples], cfg.batch_size, cfg.grad_accum, seed)
    encoder = prepare_encoder(model_dir, adapter, dropout=0.0, lora_r=lora_r, lora_alpha=lora_alpha,
                              lora_dropout=lora_dropout, max_length=extra["max_length"], seed=seed,
                              device=device, dtype=dtype)
    print(f"supervised data: {len(triples)} triples in {len(batches.groups)} dataset(s), "
          f"{batches.per_epoch} batches of {cfg.batch_size} per epoch"
          + (f"; GradCache, {chunk_size} triples per pass" if chunk_size else ""))
    held_out = triples[: min(64, len(triples))]

    def loss_fn(model, rows):
        q, p, n = embed_triples(encoder, [triples[i] for i in distributed.shard(rows)], chunk_size)
        q, p, n = (distributed.gather_with_grad(v) for v in (q, p, n))  # candidates from every process
        return contrastive_loss(q, p, n, scale=50.0), {}

    @torch.no_grad()
    def evaluate(model):
        """How often a held-out query ranks its positive first among all positives and negatives."""
        was_training = model.training
        model.eval()
        q, p, n = embed_triples(encoder, held_out)
        model.train(was_training)
        scores = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(torch.cat([p, n]), dim=-1).T
        hits = scores.argmax(-1) == torch.arange(len(q), device=q.device)
        return {"accuracy": hits.float().mean().item(), "loss": contrastive_loss(q, p, n, scale=50.0).item()}

    return train(encoder.model, loss_fn=loss_fn, batch_fn=batches.indices, cfg=cfg, out_dir=out_dir,
                 eval_fn=evaluate, resume=resume, desc="supervised", base_model=str(model_dir), overwrite=overwrite,
                 settings=dict(max_length=extra["max_length"], data=str(data), adapter=adapter and str(adapter)))
