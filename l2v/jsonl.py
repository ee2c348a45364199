"""Reading JSONL with errors that name the file, the line and the field (training data and tasks)."""

from __future__ import annotations

import json
from pathlib import Path


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
