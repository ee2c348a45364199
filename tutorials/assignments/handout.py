"""Build the student hand-out: what a student gets, and nothing an instructor keeps back.

    python tutorials/assignments/handout.py OUT                    # OUT must not exist yet (nothing is overwritten)
    python tutorials/assignments/handout.py OUT --with-solutions   # the solutions release, after the deadline
    python tutorials/assignments/handout.py KIT --instructor-kit   # what the hand-out leaves out, on its own

The hand-out has the repository's layout, so every command in its README runs as written there:

OUT/pyproject.toml, OUT/l2v/     the library (the graders run l2v models; `pip install -e ".[tutorials]"`)
OUT/tutorials/                   the notebooks (outputs stripped, as in git), common.py, render.py, the
                                 recorded SmolLM2 values, the tutorials README
OUT/docs/, OUT/scripts/, OUT/tests/, OUT/tutorials/rendered/
                                 what the notebooks and READMEs cite: the results and their data, the
                                 scripts that made them, the library's reference tests, the notebooks
                                 as they ran on SmolLM2
OUT/tutorials/assignments/       the stubs (aNN_*.py), the visible graders (test_aNN_*.py), grading.py,
                                 conftest.py, grade.py (a student may score themselves: visible checks
                                 only) and the student half of README.md

Left out: reference.py (which points each stub at the l2v function it mirrors), hidden/ (the
instructor's checks and rubrics), the autograder builder, tests/test_assignments.py (the graders'
mutation tests quote the solutions) and tests/assignment_solutions/ (the
worked solutions and the answers to the notebooks' "Predict, then run" questions, only in the
solutions release). l2v's own code is within a student's reach; the
integrity check is what makes using it score nothing.
"""

import argparse
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TUTORIALS = HERE.parent
ROOT = TUTORIALS.parent
KEPT_BACK = ("reference.py", "hidden", "handout.py", "autograder.py", "similarity.py")  # and the worked solutions (under tests/)
SOLUTIONS = ROOT / "tests" / "assignment_solutions"
COURSE_README = """# LLM2Vec from scratch: the course hand-out

Start with [tutorials/README.md](tutorials/README.md) (the notebooks) and
[tutorials/assignments/README.md](tutorials/assignments/README.md) (the assignments and how they
are graded). `l2v/` is the library the notebooks take apart and the graders run.
"""


def student_readme(text: str) -> str:
    """README.md up to the instructors' section."""
    return text.split("\n## For instructors")[0].rstrip() + "\n"


def build(out: Path, with_solutions: bool = False) -> Path:
    """The hand-out in the new folder `out`; with_solutions: the solutions release (after the deadline)."""
    out = Path(out)
    if out.exists():
        raise SystemExit(f"{out} exists: give a new folder (the hand-out builder never overwrites)")
    assignments, tutorials = out / "tutorials" / "assignments", out / "tutorials"
    assignments.mkdir(parents=True)
    shutil.copy2(ROOT / "pyproject.toml", out / "pyproject.toml")
    (out / "README.md").write_text(COURSE_README)  # pyproject.toml's readme
    shutil.copytree(ROOT / "l2v", out / "l2v", ignore=shutil.ignore_patterns("__pycache__"))
    for path in sorted(HERE.iterdir()):
        # the .py files, and the written parts: a08's questions, a11's report template
        if (path.suffix == ".py" or re.match(r"a\d\d_.*\.md$", path.name)) and path.name not in KEPT_BACK:
            shutil.copy2(path, assignments / path.name)
    (assignments / "README.md").write_text(student_readme((HERE / "README.md").read_text()))
    extras = ["common.py", "render.py", "smollm2_values.json", "README.md", "SETUP.md"]
    for path in sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb")) + [TUTORIALS / name for name in extras]:
        shutil.copy2(path, tutorials / path.name)
    # What the notebooks, the READMEs and the library cite ships with them: the measured results and
    # their data, the scripts that made them, the rendered notebooks (a student compares with them).
    for folder in ("docs", "scripts", "tutorials/rendered"):
        shutil.copytree(ROOT / folder, out / folder, ignore=shutil.ignore_patterns("__pycache__"))
    # The library's own tests (its reference checks, which the docs cite), not the course's: the worked
    # solutions and the graders' mutation tests (each planted mistake quotes a solution's line) stay back.
    shutil.copytree(ROOT / "tests", out / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "assignment_solutions", "test_assignments.py"))
    if with_solutions:
        (out / "solutions").mkdir()
        for path in sorted(SOLUTIONS.glob("a[0-9][0-9]_*.py")):
            shutil.copy2(path, out / "solutions" / path.name)
        # the answers to each notebook's "Predict, then run" questions
        shutil.copytree(SOLUTIONS / "notebook_answers", out / "solutions" / "notebook_answers")
    n = sum(1 for _ in out.rglob("*") if _.is_file())
    left = "" if with_solutions else ", the worked solutions"
    print(f"hand-out: {n} files in {out} (left out: {', '.join(KEPT_BACK[:2])}{left})")
    return out


KIT_README = """# The instructors' kit: keep it private

Not for students: it holds what the hand-out leaves out. Keep it in a private repository or a folder
students cannot read; the course's public repository has all of it too, so tell students to work
from the hand-out.

- hidden/            the hidden checks (inputs drawn from L2V_GRADER_SEED) and the rubrics of a08 and a11
- reference.py       each stub pointed at the l2v function it mirrors (grade.py --solution)
- solutions/         the worked solutions, and the answers to every notebook's "Predict, then run"
- autograder.py      Gradescope zips (--only aNN: one a week; a random hidden-checks seed in each)
- similarity.py      pairs of look-alike submissions, to read side by side
- test_assignments.py  the graders' own tests: planted mistakes (they quote the solutions)

To grade with it, copy hidden/ and reference.py into the course's tutorials/assignments/.
"""


def build_kit(out: Path) -> Path:
    """The instructor-only material in the new folder `out`, on its own (handout.py --instructor-kit)."""
    out = Path(out)
    if out.exists():
        raise SystemExit(f"{out} exists: give a new folder (the hand-out builder never overwrites)")
    out.mkdir(parents=True)
    shutil.copytree(HERE / "hidden", out / "hidden", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("reference.py", "autograder.py", "similarity.py"):
        shutil.copy2(HERE / name, out / name)
    shutil.copytree(SOLUTIONS, out / "solutions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "tests" / "test_assignments.py", out / "test_assignments.py")
    (out / "README.md").write_text(KIT_README)
    print(f"instructors' kit: {sum(1 for p in out.rglob('*') if p.is_file())} files in {out} (keep it private)")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the folder to create")
    p.add_argument("--with-solutions", action="store_true", help="the solutions release: add the worked solutions")
    p.add_argument("--instructor-kit", action="store_true",
                   help="build the instructor-only material (hidden checks, rubrics, solutions) instead")
    args = p.parse_args(argv)
    if args.instructor_kit:
        build_kit(args.out)
    else:
        build(args.out, with_solutions=args.with_solutions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
