"""Build the zip a Gradescope programming assignment takes ("Configure Autograder" → upload).

    python tutorials/assignments/autograder.py --only a03 a03.zip   # one assignment a week: graded out of its points
    python tutorials/assignments/autograder.py autograder.zip       # every assignment at once; never overwrites

Inside: setup.sh (installs CPU torch and l2v with the graders' extra from the source in the zip),
run_autograder (grades /autograder/submission/aNN_*.py with every check, hidden ones included,
isolated and time-limited, into /autograder/results/results.json), and source/: the l2v package,
the graders (visible and hidden) and grading.py — not the worked solutions. Students upload their
aNN_*.py files; each check becomes one Gradescope test, hidden checks shown once grades are
published. tests/test_assignments.py runs run_autograder on a worked solution with the paths moved
to a temporary folder (AUTOGRADER_ROOT).
"""

import argparse
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, when the image is built (Ubuntu with Python 3).
set -euo pipefail
cd "${AUTOGRADER_ROOT:-/autograder}/source"
python3 -m pip install torch --index-url https://download.pytorch.org/whl/cpu   # the CPU build: no GPU there
python3 -m pip install ".[tutorials]"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission: the student's files are in submission/.
set -euo pipefail
root="${{AUTOGRADER_ROOT:-/autograder}}"
export L2V_GRADER_SEED="${{L2V_GRADER_SEED:-{seed}}}"  # the hidden checks' inputs (grading.grader_seed)
mkdir -p "$root/results"
python3 "$root/source/tutorials/assignments/grade.py" "$root/submission" {only}\\
    --gradescope "$root/results/results.json" --timeout 120 --submission-timeout 1200 || true  # < full marks exits 1
"""


def assignment(name: str) -> str:
    """'a03' or 'a03_pooling' → 'a03_pooling' (a graded assignment: a08 is written)."""
    known = sorted(p.stem for p in HERE.glob("a[0-9][0-9]_*.py"))
    found = [a for a in known if a == name or a.split("_")[0] == name]
    if not found:
        raise SystemExit(f"no graded assignment {name!r}: choose one of {', '.join(a[:3] for a in known)}")
    return found[0]


def source_files() -> list[Path]:
    """What the autograder needs of this repository: l2v, its packaging, the graders."""
    files = [ROOT / "pyproject.toml", ROOT / "README.md", ROOT / "tutorials" / "common.py"]
    files += sorted((ROOT / "l2v").rglob("*.py"))
    files += [p for p in sorted(HERE.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
              and p.suffix in (".py", ".md") and p.name != "autograder.py"]
    return files


def build(out: Path, only: str | None = None, seed: int | None = None) -> Path:
    """The zip; only: one assignment ('a03'), graded out of its own points (a missing file of another
    week's does not count against it); seed: the hidden checks' inputs (a random one if not given —
    the zip is the instructor's, never the students')."""
    import secrets

    out = Path(out)
    if out.exists():
        raise SystemExit(f"{out} exists: give a new file name (never overwritten)")
    seed = secrets.randbelow(10**6) if seed is None else seed
    run = RUN.format(only=f"--only {assignment(only)} " if only else "", seed=seed)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", SETUP), ("run_autograder", run)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16  # executable, as Gradescope runs them
            z.writestr(info, text)
        for path in source_files():
            z.write(path, f"source/{path.relative_to(ROOT).as_posix()}")
    what = f"grades {assignment(only)} only" if only else "grades every assignment"
    print(f"autograder: {out} ({len(z.namelist())} files; {what}; hidden checks' seed {seed}; "
          "the worked solutions are not in it)")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the zip to write")
    p.add_argument("--only", help="one assignment (a03 or a03_pooling): a zip per week, graded out of its points")
    p.add_argument("--seed", type=int, help="the hidden checks' inputs (default: a random one, printed)")
    args = p.parse_args(argv)
    build(args.out, args.only, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
