"""Issue 39: weakly supervised triples mined from Wikipedia's structure, and nothing an evaluation reads in them."""

import bz2
import json

import pytest

from l2v.sources import mined
from l2v.supervised import read_triples
from l2v.tools.cli import main as cli

LEAD = "Photosynthesis is the way green plants turn light, water and carbon dioxide into sugar and oxygen."
LEAD2 = "It happens in the chloroplasts of leaf cells, and it feeds nearly every living thing on the planet."
HISTORY = ("Jan Ingenhousz showed in 1779 that plants need light to make oxygen. "
           "Later chemists found the sugars and the role of chlorophyll over the following century.")
LIGHT = ("The light reactions split water and store energy in two small carriers. "
         "They take place in the thylakoid membranes and release oxygen as a by-product of the work.")
SUITE_TEXT = "A planted sentence that an evaluation suite also holds word for word today."
ARTICLE = f"""{{{{Infobox|x=1}}}}
'''Photosynthesis''' is the way green plants turn [[light]], water and carbon dioxide into sugar and oxygen.
{LEAD2}
== History ==
{HISTORY}
== Light reactions ==
{LIGHT}
=== Leaked ===
{SUITE_TEXT} It is followed by more words so the paragraph is long enough to keep.
== References ==
Every reference line here is long enough to be a paragraph but is never mined at all.
"""


def write_dump(path, articles):
    pages = "".join(f"<page><title>{t}</title><ns>0</ns><revision><text>{x.replace('&', '&amp;').replace('<', '&lt;')}"
                    f"</text></revision></page>" for t, x in articles)
    with bz2.open(path, "wt") as f:
        f.write(f"<mediawiki>{pages}<page><title>Talk</title><ns>1</ns><revision><text>{LEAD}</text></revision>"
                f"</page></mediawiki>")
    return path


def test_each_kind_comes_from_the_structure_it_claims(tmp_path):
    dump = write_dump(tmp_path / "d.xml.bz2", [("Photosynthesis", ARTICLE)])
    with bz2.open(dump) as f:
        (sections,) = list(mined.dump_to_sections(f))  # the talk page (namespace 1) is not an article
    assert [s.heading for s in sections] == [None, "History", "Light reactions", "Leaked"]  # References skipped
    assert sections[0].paragraphs == (LEAD, LEAD2)
    triples = mined.mine_article(sections, __import__("random").Random(0))
    by = {k: [t for t in triples if t.dataset == k] for k in mined.KINDS}
    (title,) = by["title"]
    assert title.query == "Photosynthesis" and title.positive == LEAD
    assert title.negative in {s.paragraphs[0] for s in sections[1:]}  # another section of the same article
    assert {t.query for t in by["heading"]} == {"Photosynthesis: History", "Photosynthesis: Light reactions",
                                                 "Photosynthesis: Leaked"}
    for t in by["heading"]:
        section = next(s for s in sections if f"Photosynthesis: {s.heading}" == t.query)
        assert t.positive == section.paragraphs[0] and t.negative != t.positive
        assert t.negative in {s.paragraphs[0] for s in sections[1:]}
    history = next(t for t in by["sentence"] if t.query.startswith("Jan Ingenhousz"))
    assert history.query + " " + history.positive == HISTORY
    assert all(t.instruction == mined.INSTRUCTIONS[t.dataset] for t in triples)


def test_nothing_an_evaluation_reads_is_mined(tmp_path, capsys):
    dump = write_dump(tmp_path / "d.xml.bz2", [("Photosynthesis", ARTICLE)])
    result = mined.mine_pairs(dump, tmp_path / "t.jsonl", exclude=[SUITE_TEXT])
    rows = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert result["dropped"] > 0 and len(rows) == sum(result["counts"].values())
    assert not any("planted sentence" in v for r in rows for v in r.values()), "a suite's text was mined"
    assert len(read_triples(tmp_path / "t.jsonl")) == len(rows)  # the supervised step reads it as it is
    with pytest.raises(ValueError, match="exists"):
        mined.mine_pairs(dump, tmp_path / "t.jsonl", exclude=[])


def test_the_real_dump_shares_no_text_with_any_suite(tmp_path):
    """On the fetched Wikipedia dump: no mined triple shares an 8-word run with l2v-mini, l2v-dev or the
    held-out corpora (the filter's own verdict checked by a second, independent one: verbatim substrings)."""
    from l2v.sources.fetch import WIKI_DUMP

    if not WIKI_DUMP.local.is_file():
        pytest.skip("run `l2v fetch wiki` first")
    texts = mined.evaluation_texts()
    result = mined.mine_pairs(WIKI_DUMP.local, tmp_path / "t.jsonl", exclude=texts)
    assert min(result["counts"].values()) > 50, result
    rows = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    guard = mined.Decontaminator(texts)
    assert not [r for r in rows if any(guard.leaks(r[k]) for k in ("query", "positive", "negative"))]
    mined_text = "\n".join(r[k] for r in rows for k in ("query", "positive", "negative")).lower()
    long_texts = {t.lower() for t in texts if len(t.split()) >= 8}
    assert not [t for t in long_texts if t in mined_text]


def test_mine_pairs_cli(tmp_path, monkeypatch, capsys):
    dump = write_dump(tmp_path / "d.xml.bz2", [("Photosynthesis", ARTICLE)])
    monkeypatch.setattr("l2v.sources.fetch.fetch_wheel_file", lambda spec, **kw: dump)
    monkeypatch.setattr(mined, "evaluation_texts", lambda: [SUITE_TEXT])
    assert cli(["mine-pairs", "--out", str(tmp_path / "t.jsonl"), "--kinds", "heading,sentence"]) is None
    out = capsys.readouterr().out
    assert "heading" in out and "dropped" in out and "l2v supervised --data" in out
    assert {json.loads(x)["dataset"] for x in (tmp_path / "t.jsonl").read_text().splitlines()} <= {"heading", "sentence"}
    assert cli(["mine-pairs", "--out", str(tmp_path / "u.jsonl"), "--kinds", "poems"]) == 2
    assert "unknown kind(s) poems" in capsys.readouterr().err
