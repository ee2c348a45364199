"""Training text, read the same way by every stage: documents for MNTP, sentences for SimCSE.

    read_texts(source)        'wiki' (the cached Wikipedia excerpt), a .jsonl file of {"text": ...}
                              rows, or a text file with one document or paragraph a line
    read_sentences(source)    'wiki' → its sentences (5–64 words); a file → one sentence a line
"""

from __future__ import annotations

import re
from pathlib import Path

from .files import read_jsonl, read_lines


def read_texts(source) -> list[str]:
    """Documents or paragraphs, blank lines skipped."""
    if str(source) == "wiki":
        from .fetch import fetch_wiki

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
