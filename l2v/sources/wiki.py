"""MediaWiki XML dump → plain English paragraphs (LLM2Vec trains MNTP and SimCSE on Wikipedia).

Good enough for training text, not a full wikitext parser: templates, references, tables, comments,
files, categories and headings are dropped; links keep their visible text.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

MIN_WORDS = 12  # shorter lines are list items, captions and leftovers, not prose

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")
_FILE_LINK = re.compile(r"\[\[(?:File|Image|Category|[a-z]{2,3}(?:-[a-z]+)?):", re.I)
_LINK = re.compile(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]")
_EXT_LINK = re.compile(r"\[(?:https?|ftp)://\S+(?: ([^\]]*))?\]")
_EMPHASIS = re.compile(r"'{2,}")
_GALLERY = re.compile(r"(?:File|Image):", re.I)


def _drop_nested(text: str, open_: str, close: str) -> str:
    """Remove every (possibly nested) open_ … close span, e.g. {{templates {{inside}} }}."""
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith(open_, i):
            depth, i = depth + 1, i + len(open_)
        elif depth and text.startswith(close, i):
            depth, i = depth - 1, i + len(close)
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def _drop_file_links(text: str) -> str:
    """[[File:...|thumb|a caption with [[links]]]] spans nest links, so cut them by bracket depth."""
    while m := _FILE_LINK.search(text):
        depth, i = 0, m.start()
        while i < len(text):
            if text.startswith("[[", i):
                depth, i = depth + 1, i + 2
            elif text.startswith("]]", i):
                depth, i = depth - 1, i + 2
                if depth == 0:
                    break
            else:
                i += 1
        text = text[: m.start()] + text[i:]
    return text


def wikitext_to_paragraphs(text: str) -> list[str]:
    text = html.unescape(text)
    text = _COMMENT.sub("", text)
    text = _REF.sub("", text)
    text = _drop_nested(text, "{{", "}}")  # templates and infoboxes
    text = _drop_nested(text, "{|", "|}")  # tables
    text = _drop_file_links(text)
    text = _LINK.sub(r"\1", text)
    text = _EXT_LINK.sub(lambda m: m.group(1) or "", text)
    text = _TAG.sub("", text)
    text = _EMPHASIS.sub("", text)
    paragraphs = []
    for line in text.split("\n"):
        line = re.sub(r"\s+", " ", line).strip()
        if not line or line[0] in "=*#:;|!{}[" or _GALLERY.match(line) or len(line.split()) < MIN_WORDS:
            continue  # headings, lists, indents, gallery captions, table debris
        paragraphs.append(line)
    return paragraphs


def iter_articles(xml_stream) -> Iterator[tuple[str, str]]:
    """(title, wikitext) of every article (namespace 0, not a redirect) in a MediaWiki XML export."""
    for _, elem in ET.iterparse(xml_stream):
        if elem.tag.rsplit("}", 1)[-1] != "page":
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: child for child in elem}
        revision = fields.get("revision")
        text = None if revision is None else next(
            (c.text for c in revision if c.tag.rsplit("}", 1)[-1] == "text"), None)
        title = fields["title"].text if fields.get("title") is not None else None
        if fields.get("ns") is not None and fields["ns"].text == "0" and "redirect" not in fields and text:
            if not text.lstrip().upper().startswith("#REDIRECT"):
                yield title or "", text
        elem.clear()


def dump_to_paragraphs(xml_stream) -> Iterator[str]:
    """Paragraphs of every article in a MediaWiki XML export."""
    for _, text in iter_articles(xml_stream):
        yield from wikitext_to_paragraphs(text)
