"""Training data, the same way for every stage: the text, and which items make each batch.

    read_texts(source)        'wiki' (the cached Wikipedia excerpt), a .jsonl file of {"text": ...}
                              rows, or a text file with one document or paragraph a line
    read_sentences(source)    'wiki' → its sentences (5–64 words); a file → one sentence a line
    EpochSampler              the items of micro-batch (step, micro): a pure function of the step,
                              so resuming needs no saved data position
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .runtime.files import read_jsonl, read_lines


def read_texts(source) -> list[str]:
    """Documents or paragraphs, blank lines skipped."""
    if str(source) == "wiki":
        from .sources.fetch import fetch_wiki

        source = fetch_wiki()
    path = Path(source)
    if path.suffix == ".jsonl":
        texts = [row["text"] for row in read_jsonl(path, {"text": str})]
    elif path.is_file():
        texts = [line for line in read_lines(path) if line.strip()]
    else:
        raise FileNotFoundError(f"data file not found: {path}")
    if not texts:
        raise ValueError(f"no text in {path}")
    return texts


def split_sentences(paragraph: str) -> list[str]:
    """A plain splitter: end punctuation, a space, then a capital letter or a quote."""
    return [s.strip() for s in re.split(r'(?<=[.!?])\s+(?=[A-Z"“])', paragraph) if s.strip()]


def read_sentences(source, min_words: int = 5, max_words: int = 64) -> list[str]:
    """'wiki' → Wikipedia sentences (split from the MNTP text); otherwise a file, one sentence a line."""
    if str(source) == "wiki":
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


class EpochSampler:
    """Which items form micro-batch (step, micro): an endless stream of epochs, each a fresh
    permutation seeded by (seed, epoch). A pure function of its arguments, so resuming at a step
    needs no saved data position. (supervised.DatasetBatches orders batches instead of items.)"""

    def __init__(self, n_items: int, batch_size: int, grad_accum: int = 1, seed: int = 0):
        self.n, self.batch_size, self.grad_accum, self.seed = n_items, batch_size, grad_accum, seed
        self._epoch, self._order = None, None

    def indices(self, step: int, micro: int) -> list[int]:
        k = self.micro_batch(step, micro)
        return [self.epoch(p // self.n)[p % self.n] for p in range(k * self.batch_size, (k + 1) * self.batch_size)]

    def micro_batch(self, step: int, micro: int) -> int:
        """The global number of micro-batch (step, micro)."""
        return step * self.grad_accum + micro

    def micro_seed(self, step: int, micro: int) -> int:
        """A seed of this micro-batch's own, e.g. for MNTP's masks."""
        return self.seed * 1_000_003 + self.micro_batch(step, micro)

    def epoch(self, epoch: int) -> list:
        """Epoch `epoch`'s order (the last one asked for is kept)."""
        if self._epoch != epoch:
            self._epoch, self._order = epoch, self.shuffle(torch.Generator().manual_seed(self.seed + epoch))
        return self._order

    def shuffle(self, g: torch.Generator) -> list:
        return torch.randperm(self.n, generator=g).tolist()
