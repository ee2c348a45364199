"""Files read and written safely: reads whose errors name the file and the line, and writes that
never leave a half-written file or folder behind (write to a temporary name, then rename).

    read_json, read_lines, read_jsonl      one-line errors: "FILE, line N: …"
    write_atomic(path, text or bytes)      a file appears whole or not at all
    atomic_folder(dest)                    the same for a folder (adapters, checkpoints, suites, models)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .checks import L2VError, hold_signals


def write_atomic(path, data: str | bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it into place: a reader (or a
    run killed mid-write) sees the old file or the new one, never a part of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


@contextmanager
def atomic_folder(dest):
    """Yield a temporary folder beside `dest`; on success it takes `dest`'s place.

    A crash or Ctrl-C leaves `dest` as it was (or absent), never half written. The swap is two
    renames (dest → .dest.old, new → dest) with SIGINT/SIGTERM held back between them, so an
    interrupt cannot land while no `dest` exists; after a hard kill there, `recover_folder`
    puts the old one back. A file in `dest` that the new folder does not replace (one l2v did
    not write) stops the swap with an error instead of being deleted.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only
    try:
        yield tmp
        _swap_in(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _old_copy(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.old")


def recover_folder(dest):
    """Undo a swap cut short by a hard kill: `.dest.old` without `dest` is the last complete one."""
    dest = Path(dest)
    old = _old_copy(dest)
    if old.is_dir() and not dest.exists():
        os.replace(old, dest)
    elif old.is_dir():
        shutil.rmtree(old)  # the new folder made it into place; the old copy is left over


def _swap_in(new: Path, dest: Path):
    if dest.is_dir():
        foreign = sorted(p.name for p in dest.iterdir() if not (new / p.name).exists())
        if foreign:
            raise L2VError(f"{dest} holds {', '.join(foreign)}, which l2v did not write; move it away "
                           f"(nothing in {dest} was changed)")
    elif dest.exists():
        raise L2VError(f"{dest} is a file, not a folder; l2v will not replace it")
    old = _old_copy(dest)
    with hold_signals():  # never a moment, as far as Ctrl-C or SIGTERM can tell, without `dest`
        if dest.exists():
            os.replace(dest, old)
        os.replace(new, dest)
    if old.exists():
        shutil.rmtree(old)
    for stale in dest.parent.glob(f".{dest.name}.tmp-*"):  # left by an earlier run that was killed
        shutil.rmtree(stale, ignore_errors=True)


# ---------------------------------------------------------------- reading


def read_json(path, what: str = "JSON file"):
    """json.loads of a file; invalid JSON is an L2VError naming the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise L2VError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise L2VError(f"{path}, line {e.lineno}: not valid {what} ({e.msg})") from None


def read_texts(path, column: str = "text") -> list[str]:
    """Texts to embed: a .jsonl file (each line an object's `column`), a .csv file (its `column`), else
    one text per line (read_lines). A record without the field is an error naming it."""
    import csv

    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        return [row[column] for row in read_jsonl(path, {column: str}, error=L2VError)]
    if path.suffix.lower() != ".csv":
        return read_lines(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    try:  # newline="": a quoted field may hold line breaks, which csv keeps
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError as e:
        raise L2VError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    if rows and column not in rows[0]:
        raise L2VError(f"{path}: no column {column!r} (it has {', '.join(rows[0])}); choose one with --column")
    return [row[column] or "" for row in rows]


def read_lines(path) -> list[str]:
    """One text per '\\n'-terminated line (a trailing '\\r' dropped, a UTF-8 BOM stripped).

    Not str.splitlines: that also splits at form feeds, U+2028 and NEL, characters that can sit
    inside one line of text, and the rows would no longer match the lines. Invalid UTF-8 is an
    L2VError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()  # the final newline ends the last line; it does not start another
    lines = []
    for n, line in enumerate(raw, 1):
        try:
            lines.append(line.removesuffix(b"\r").decode("utf-8"))
        except UnicodeDecodeError as e:
            raise L2VError(f"{path}, line {n}: not valid UTF-8 (byte {e.start} of the line)") from None
    return lines


def read_jsonl(path, fields: dict, error: type[Exception] = ValueError, lines: list | None = None) -> list[dict]:
    """Rows of a JSONL file (blank lines skipped); each must be an object whose `fields` have the
    given types, e.g. {"text": str}. Problems raise `error` with "FILE, line N: …". `lines`, if
    given, receives each row's line number (for later checks that name the line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    rows = []
    with open(path, "rb") as f:
        for n, line in enumerate(_lines(f, path, error), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{path}, line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise error(f"{path}, line {n}: expected a JSON object")
            for key, kind in fields.items():
                if key not in row:
                    raise error(f"{path}, line {n}: missing field '{key}'")
                if not isinstance(row[key], kind) or isinstance(row[key], bool):
                    raise error(f"{path}, line {n}: field '{key}' has the wrong type ({type(row[key]).__name__})")
            rows.append(row)
            if lines is not None:
                lines.append(n)
    return rows


def _lines(f, path, error):
    """Decoded lines of a binary file (a BOM dropped); invalid UTF-8 is `error` naming the line."""
    for n, raw in enumerate(f, 1):
        try:
            yield (raw.removeprefix(b"\xef\xbb\xbf") if n == 1 else raw).decode("utf-8")
        except UnicodeDecodeError:
            raise error(f"{path}, line {n}: not valid UTF-8") from None
