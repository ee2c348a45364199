"""How alike the class's submissions are, file by file: pairs to read side by side, not a verdict.

    python tutorials/assignments/similarity.py submissions/                  # every assignment, pairs ≥ 0.9
    python tutorials/assignments/similarity.py submissions/ --only a05_mntp --threshold 0.8

Each aNN_*.py is reduced to the shape of its code: comments and docstrings dropped, every name a
student chose (variables, functions, arguments) replaced by one placeholder and every literal by
its kind — so renaming variables or rewording comments does not hide a copy. Attribute and
library names (torch.cat, .sum) are kept: they are the code's content. Two files' similarity is
difflib's ratio of their token sequences (1.0: the same shape). Code short enough that everyone
writes it alike (a one-line function) also scores high: read the pairs, then decide.
"""

import argparse
import builtins
import difflib
import io
import keyword
import sys
import tokenize
from itertools import combinations
from pathlib import Path

SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}


def shape(source: str) -> list[str]:
    """The token sequence of a file with the names it chose and its literals made anonymous."""
    out, previous = [], None
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return source.split()  # a file that does not tokenize is compared word by word
    for tok in tokens:
        if tok.type in SKIP:
            continue
        if tok.type == tokenize.STRING:
            # a string alone on its line is a docstring (or a comment in disguise): dropped
            if previous in (None, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                previous = tok.type
                continue
            text = "STR"
        elif tok.type == tokenize.NUMBER:
            text = "NUM"
        elif tok.type == tokenize.NAME:
            chosen = not (keyword.iskeyword(tok.string) or hasattr(builtins, tok.string) or out[-1:] == ["."])
            text = "ID" if chosen else tok.string
        else:
            text = tok.string if tok.type != tokenize.INDENT else "INDENT"
        out.append(text)
        previous = tok.type
    return out


def similarity(a: list[str], b: list[str]) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def compare(root: Path, assignments=None, threshold: float = 0.9) -> list[tuple[float, str, str, str]]:
    """(similarity, assignment, student, student) for every pair at or above `threshold`, most alike first."""
    students = sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if len(students) < 2:
        raise SystemExit(f"{root}: fewer than two submission folders (one subfolder per student)")
    names = assignments or sorted({f.stem for s in students for f in s.glob("a[0-9][0-9]_*.py")})
    pairs = []
    for name in names:
        shapes = {s.name: shape((s / f"{name}.py").read_text(errors="replace"))
                  for s in students if (s / f"{name}.py").is_file()}
        for x, y in combinations(sorted(shapes), 2):
            score = similarity(shapes[x], shapes[y])
            if score >= threshold:
                pairs.append((score, name, x, y))
    return sorted(pairs, key=lambda p: (-p[0], p[1], p[2], p[3]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="a folder of submissions, one subfolder per student")
    p.add_argument("--only", nargs="+", help="these assignments only (a05_mntp ...)")
    p.add_argument("--threshold", type=float, default=0.9, help="report pairs at least this alike (default 0.9)")
    args = p.parse_args(argv)
    if not args.folder.is_dir():
        p.error(f"{args.folder} is not a folder")
    if not 0 <= args.threshold <= 1:
        p.error(f"--threshold {args.threshold}: give a number between 0 and 1")
    pairs = compare(args.folder, args.only, args.threshold)
    for score, name, x, y in pairs:
        print(f"{score:.3f}  {name:20}  {x}  {y}")
    print(f"{len(pairs)} pairs at or above {args.threshold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
