"""Grade the course assignments: one student's folder → a score; a folder of submissions → a CSV.

    python tutorials/assignments/grade.py path/to/student               # every check, then the score
    python tutorials/assignments/grade.py submissions/ --csv scores.csv  # one subfolder per student
    python tutorials/assignments/grade.py --solution                     # the reference: full marks

A student's folder holds their aNN_*.py files (a missing file scores zero for its checks). The
checks are the visible graders' (test_aNN_*.py, which students also run with pytest) plus, when this
folder has them, the instructor's hidden ones (hidden/hidden_aNN_*.py: the hand-out leaves them
out). Each grader's POINTS weights its checks. A file that uses the existing answer (l2v's own
implementation, the grader's reference library, the worked solutions) scores zero for that
assignment's checks, and the report says why (grading.integrity_problem).

Everything runs in this one process (torch and transformers load once), so a class of 30 takes
about a minute; each check is stopped after --timeout seconds.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import signal
import sys
import threading
import time
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import grading  # noqa: E402 (needs HERE on the path)

ASSIGNMENTS = sorted(p.stem for p in HERE.glob("a[0-9][0-9]_*.py"))
MINUTES = {  # expected time for a student who has done the tutorial (README's table)
    "a01_llama_block": 90, "a02_bidirectional": 40, "a03_pooling": 45, "a04_lora": 60,
    "a05_mntp": 60, "a06_simcse": 50, "a07_evaluation": 50,
}


@dataclass
class Check:
    assignment: str
    name: str
    points: int
    hidden: bool
    message: str | None = None  # None: passed

    @property
    def earned(self) -> int:
        return 0 if self.message else self.points


def grader_files(assignment: str, hidden: bool = True) -> list[tuple[Path, bool]]:
    files = [(HERE / f"test_{assignment}.py", False)]
    secret = HERE / "hidden" / f"hidden_{assignment}.py"
    if hidden and secret.is_file():
        files.append((secret, True))
    return files


def _exec(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases(module: types.ModuleType) -> list[tuple[str, object, dict]]:
    """(check name, function, arguments) for every test_* in a grader, parametrize expanded.
    Graders use no fixtures but pytest's `monkeypatch` (given by `_call`) and `parametrize`."""
    out = []
    for name, fn in vars(module).items():
        if not (name.startswith("test_") and callable(fn)):
            continue
        params = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
        if not params:
            out.append((name, fn, {}))
            continue
        (mark,) = params  # one parametrize per check is all the graders need
        argname, values = mark.args
        ids = mark.kwargs.get("ids") or [str(v) for v in values]
        out += [(f"{name}[{i}]", fn, {argname: v}) for i, v in zip(ids, values)]
    return out


class _Timeout(Exception):
    pass


def _call(fn, kwargs: dict, timeout: float):
    import pytest
    import torch

    torch.manual_seed(0)
    alarm = timeout and threading.current_thread() is threading.main_thread()
    if alarm:
        def stop(*_):
            raise _Timeout(f"still running after {timeout:g} s (an endless loop, or far too slow)")
        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with pytest.MonkeyPatch.context() as mp:
            if "monkeypatch" in fn.__code__.co_varnames[: fn.__code__.co_argcount]:
                kwargs = {**kwargs, "monkeypatch": mp}
            fn(**kwargs)
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _quiet():
    """The report is the grader's messages: no library deprecations, no progress bars of model saves."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def grade_assignment(folder: Path | None, assignment: str, *, hidden: bool = True, timeout: float = 120) -> list[Check]:
    """Every check of one assignment on `folder`'s file (folder None: the reference solution)."""
    import torch

    _quiet()
    torch.set_default_dtype(torch.float32)  # whatever an earlier submission did to torch's defaults
    torch.set_grad_enabled(True)
    problem, saved = None, sys.modules.get(assignment)
    if folder is None:
        grading.SOLUTION, grading.SUBMISSION = True, {}
    else:
        grading.SOLUTION = False
        path = Path(folder) / f"{assignment}.py"
        module = types.ModuleType(assignment)  # stands in when the student's file cannot be used
        if not path.is_file():
            problem = f"{path.name} is missing from {folder}"
        else:
            try:
                module = _exec(path, assignment)
                problem = grading.integrity_problem(assignment, module)
            except Exception as e:  # a syntax error, an import that fails, ...
                problem = f"{path.name} could not be imported: {grading.message(e)}"
        grading.SUBMISSION = {assignment: module}
        sys.modules[assignment] = module  # `import aNN_…` anywhere now means the student's file
    results = []
    try:
        for file, secret in grader_files(assignment, hidden):
            grader = _exec(file, file.stem)
            points = getattr(grader, "POINTS", {})
            for name, fn, kwargs in cases(grader):
                base = name.split("[")[0]
                if base not in points:
                    raise KeyError(f"{file.name}: POINTS has no entry for {base}")
                check = Check(assignment, name, points[base], secret, problem)
                if problem is None:
                    try:
                        _call(fn, kwargs, timeout)
                    except Exception as e:
                        check.message = grading.message(e)
                results.append(check)
    finally:
        grading.SUBMISSION, grading.SOLUTION = {}, False
        if saved is None:
            sys.modules.pop(assignment, None)
        else:
            sys.modules[assignment] = saved
    return results


def grade(folder: Path | None, assignments=None, *, hidden: bool = True, timeout: float = 120) -> list[Check]:
    return [c for a in (assignments or ASSIGNMENTS) for c in grade_assignment(folder, a, hidden=hidden, timeout=timeout)]


def score(checks: list[Check]) -> tuple[int, int]:
    return sum(c.earned for c in checks), sum(c.points for c in checks)


def report(checks: list[Check]) -> str:
    lines = []
    for a in dict.fromkeys(c.assignment for c in checks):
        mine = [c for c in checks if c.assignment == a]
        got, total = score(mine)
        lines.append(f"{a}  (about {MINUTES.get(a, '?')} min){'':<12}{got:>3}/{total}")
        for c in mine:
            tag = " (hidden)" if c.hidden else ""
            if c.message is None:
                lines.append(f"  ok    {c.name}{tag}  {c.points}")
            else:
                lines.append(f"  FAIL  {c.name}{tag}  0/{c.points}  {c.message}")
    got, total = score(checks)
    lines.append(f"score: {got}/{total}")
    return "\n".join(lines)


def grade_class(root: Path, csv_path: Path, *, assignments=None, hidden: bool = True, timeout: float = 120):
    """Grade every subfolder of `root` (one per student) and write one CSV row each."""
    from tqdm import tqdm

    students = sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not students:
        raise SystemExit(f"{root}: no submission folders in it (expected one subfolder per student)")
    names = assignments or ASSIGNMENTS
    rows, start = [], time.perf_counter()
    for student in tqdm(students, desc="grading", unit="submission"):
        checks = grade(student, names, hidden=hidden, timeout=timeout)
        row = {"student": student.name}
        for a in names:
            row[a] = score([c for c in checks if c.assignment == a])[0]
        row["total"], row["out_of"] = score(checks)
        failed = [f"{c.assignment}:{c.name}" for c in checks if c.message]
        integrity = sorted({c.assignment for c in checks if c.message and c.message.startswith("integrity:")})
        row["integrity"] = " ".join(integrity)
        row["failed_checks"] = " ".join(failed)
        rows.append(row)
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    seconds = time.perf_counter() - start
    mean = sum(r["total"] for r in rows) / len(rows)
    print(f"graded {len(rows)} submissions in {seconds:.1f} s; mean score {mean:.1f}/{rows[0]['out_of']}; "
          f"{sum(bool(r['integrity']) for r in rows)} with an integrity problem → {csv_path}")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", nargs="?", type=Path, help="a student's folder, or with --csv a folder of them")
    p.add_argument("--csv", type=Path, help="grade every subfolder of FOLDER and write the scores here")
    p.add_argument("--force", action="store_true", help="overwrite an existing --csv file")
    p.add_argument("--solution", action="store_true", help="grade the reference solution (the l2v library)")
    p.add_argument("--only", nargs="+", choices=ASSIGNMENTS, help="grade these assignments only")
    p.add_argument("--no-hidden", action="store_true", help="leave the hidden checks out (what students see)")
    p.add_argument("--timeout", type=float, default=120, help="seconds one check may run (default 120)")
    args = p.parse_args(argv)
    if args.solution == (args.folder is not None):
        p.error("give a FOLDER to grade, or --solution")
    if args.folder is not None and not args.folder.is_dir():
        p.error(f"{args.folder} is not a folder")
    options = dict(hidden=not args.no_hidden, timeout=args.timeout)
    if args.csv:
        if args.csv.exists() and not args.force:
            p.error(f"{args.csv} exists: pass --force to overwrite it")
        grade_class(args.folder, args.csv, assignments=args.only, **options)
        return 0
    if args.folder is not None and not any(args.folder.glob("a[0-9][0-9]_*.py")) and any(
            p.is_dir() for p in args.folder.iterdir()):
        p.error(f"{args.folder} holds no aNN_*.py files but has subfolders: to grade a class, add --csv scores.csv")
    checks = grade(args.folder, args.only, **options)
    print(report(checks))
    got, total = score(checks)
    return 0 if got == total else 1


if __name__ == "__main__":
    sys.exit(main())
