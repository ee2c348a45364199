"""Grade the course assignments: one student's folder → a score; a folder of submissions → a CSV.

    python tutorials/assignments/grade.py path/to/student               # every check, then the score
    python tutorials/assignments/grade.py submissions/ --csv scores.csv  # one subfolder per student
    python tutorials/assignments/grade.py --solution                     # the reference: full marks
    python tutorials/assignments/grade.py path/to/student --gradescope results.json   # Gradescope's format

A class run writes, beside scores.csv, scores-feedback/<student>.txt (every check with the graders'
teaching messages: what to send each student) and scores-feedback/<student>.results.json
(Gradescope's format: score, max_score, one test per check, hidden checks shown once grades are
published). autograder.py builds the zip a Gradescope programming assignment takes.

A student's folder holds their aNN_*.py files (a missing file scores zero for its checks). The
checks are the visible graders' (test_aNN_*.py, which students also run with pytest) plus, when this
folder has them, the instructor's hidden ones (hidden/hidden_aNN_*.py: the hand-out leaves them
out). Each grader's POINTS weights its checks. A file that uses the existing answer (l2v's own
implementation, the grader's reference library, the worked solutions) scores zero for that
assignment's checks, and the report says why (grading.integrity_problem).

Isolation. A class is graded one submission per subprocess (--jobs at a time), each with a memory
limit (--memory-gb) and a time limit for the whole submission (--submission-timeout), so one
student's code — a patched library, an endless loop, a crash — cannot touch another's grade. Inside
it, importing a student's file and each check are stopped after --timeout seconds, and the
libraries and graders are snapshotted before a student's file runs: a file that replaces any of
their functions (say `torch.allclose = lambda *a, **k: True`) scores zero for that assignment, with
a message naming what it replaced, and the originals are put back. A grader that cannot be imported
(a missing package) fails its assignment with that message, not the class.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import signal
import subprocess
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
    "a05_mntp": 60, "a06_simcse": 50, "a07_evaluation": 50, "a09_gradcache": 50, "a10_supervised": 35,
    "a11_capstone": 150,
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


# What a submission may not replace: the libraries the graders compare with, and the graders' helpers.
GUARDED = ("builtins", "math", "torch", "torch.nn", "torch.nn.functional", "torch.testing", "torch.linalg",
           "numpy", "numpy.testing", "pytest", "grading", "reference")


def _guarded() -> dict[tuple[str, str], object]:
    """{(owner, name): object} for every attribute of the guarded modules and of torch.Tensor."""
    import torch._dynamo  # noqa: F401 (importing it wraps torch.manual_seed: let that happen before any snapshot)

    owners = {m: sys.modules[m] for m in GUARDED if m in sys.modules}
    owners["torch.Tensor"] = sys.modules["torch"].Tensor if "torch" in sys.modules else None
    return {(o, n): v for o, obj in owners.items() if obj is not None for n, v in list(vars(obj).items())}


def _tampered(before: dict) -> str | None:
    """Put back whatever changed since `before` and name it (None: nothing did)."""
    owners = {owner for owner, _ in before}  # a module first imported during the check is not compared
    now = {key: value for key, value in _guarded().items() if key[0] in owners}
    changed = [key for key, value in now.items() if key in before and before[key] is not value]
    # New names count too (torch.Tensor.__eq__ is inherited, so setting it adds one), except submodules,
    # which importing them adds.
    # copyreg caches __slotnames__ on a class the first time one is pickled (torch.save): not a change.
    added = [key for key, value in now.items() if key not in before and not isinstance(value, types.ModuleType)
             and key[1] != "__slotnames__"]
    for owner, name in changed + added:
        target = sys.modules["torch"].Tensor if owner == "torch.Tensor" else sys.modules[owner]
        try:
            if (owner, name) in before:
                setattr(target, name, before[(owner, name)])
            else:
                delattr(target, name)
        except (AttributeError, TypeError):
            pass
    names = [f"{o}.{n}" for o, n in changed + added]
    return ", ".join(sorted(names)[:3]) + (" …" if len(names) > 3 else "") if names else None


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
            return fn(**kwargs)
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
    problem, saved = None, {name: sys.modules.get(name) for name in (assignment, *grading.BUILDS_ON.get(assignment, ()))}
    if folder is None:
        grading.SOLUTION, grading.SUBMISSION = True, {}
    else:
        grading.SOLUTION = False
        path = Path(folder) / f"{assignment}.py"
        module = types.ModuleType(assignment)  # stands in when the student's file cannot be used
        if not path.is_file():
            problem = f"{path.name} is missing from {folder}"
        else:
            before = _guarded()
            try:
                for earlier in grading.BUILDS_ON.get(assignment, ()):  # the student's own, not the stubs beside grade.py
                    if not (Path(folder) / f"{earlier}.py").is_file():
                        raise FileNotFoundError(f"{assignment}.py builds on {earlier}.py, which is missing from {folder}")
                    sys.modules[earlier] = _call(lambda: _exec(Path(folder) / f"{earlier}.py", earlier), {}, timeout)
                module = _call(lambda: _exec(path, assignment), {}, timeout)  # import-time code has the limit too
                problem = grading.integrity_problem(assignment, module)
            except Exception as e:  # a syntax error, an import that fails, an endless loop at import ...
                problem = f"{path.name} could not be imported: {grading.message(e)}"
            replaced = _tampered(before)
            if replaced:
                problem = f"integrity: {path.name} replaces {replaced} (a submission may not change the libraries or the graders)"
        grading.SUBMISSION = {assignment: module}
        sys.modules[assignment] = module  # `import aNN_…` anywhere now means the student's file
    results = []
    try:
        for file, secret in grader_files(assignment, hidden):
            try:
                grader = _exec(file, file.stem)
            except Exception as e:  # a package the grader needs is missing: this assignment, not the class
                results.append(Check(assignment, f"grader {file.name}", 0, secret,
                                     f"grader {file.name} could not be imported ({grading.message(e)}): "
                                     f"this assignment was not graded"))
                continue
            points = getattr(grader, "POINTS", {})
            for name, fn, kwargs in cases(grader):
                base = name.split("[")[0]
                if base not in points:
                    raise KeyError(f"{file.name}: POINTS has no entry for {base}")
                check = Check(assignment, name, points[base], secret, problem)
                if problem is None:
                    before = _guarded()
                    try:
                        _call(fn, kwargs, timeout)
                    except Exception as e:
                        check.message = grading.message(e)
                    replaced = _tampered(before)  # a function that patches when called
                    if replaced:
                        problem = check.message = (f"integrity: {assignment}.py replaces {replaced} (a submission "
                                                   f"may not change the libraries or the graders)")
                results.append(check)
    finally:
        grading.SUBMISSION, grading.SOLUTION = {}, False
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return results


def grade(folder: Path | None, assignments=None, *, hidden: bool = True, timeout: float = 120) -> list[Check]:
    return [c for a in (assignments or ASSIGNMENTS) for c in grade_assignment(folder, a, hidden=hidden, timeout=timeout)]


def planned_checks(assignment: str, hidden: bool = True) -> list[Check]:
    """The checks an assignment has (names, points), read from its graders: what a submission that
    never reported back is marked against."""
    out = []
    for file, secret in grader_files(assignment, hidden):
        try:
            grader = _exec(file, file.stem)
        except Exception as e:
            out.append(Check(assignment, f"grader {file.name}", 0, secret,
                             f"grader {file.name} could not be imported ({grading.message(e)}): not graded"))
            continue
        points = getattr(grader, "POINTS", {})
        out += [Check(assignment, name, points.get(name.split("[")[0], 0), secret) for name, _, _ in cases(grader)]
    return out


def grade_isolated(folder: Path, assignments=None, *, hidden: bool = True, timeout: float = 120,
                   submission_timeout: float = 900, memory_gb: float = 8) -> list[Check]:
    """`grade` in a subprocess of its own, with `memory_gb` of address space and `submission_timeout`
    seconds in all. It reports each assignment as it finishes; what it never reports (it was stopped,
    or crashed) scores zero with the reason."""
    import tempfile

    names = list(assignments or ASSIGNMENTS)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "checks.jsonl"
        cmd = [sys.executable, str(Path(__file__).resolve()), str(folder), "--report-to", str(out), "--only", *names,
               "--timeout", str(timeout), "--memory-gb", str(memory_gb)] + ([] if hidden else ["--no-hidden"])
        reason = None
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=submission_timeout)
            if run.returncode not in (0, 1):
                tail = (run.stderr.strip().splitlines() or ["no message"])[-1][:300]
                reason = f"grading stopped with exit status {run.returncode} ({tail})"
        except subprocess.TimeoutExpired:
            reason = f"the submission was stopped after {submission_timeout:g} s in all"
        done = {}
        if out.is_file():
            for line in out.read_text().splitlines():
                record = json.loads(line)
                done[record["assignment"]] = [Check(**c) for c in record["checks"]]
    checks = []
    for a in names:
        if a in done:
            checks += done[a]
        else:
            why = reason or "the grading process ended before this assignment"
            checks += [Check(c.assignment, c.name, c.points, c.hidden, c.message or f"not graded: {why}")
                       for c in planned_checks(a, hidden)]
    return checks


def _report_to(path: Path, folder: Path, assignments, *, hidden: bool, timeout: float, memory_gb: float):
    """The subprocess side of grade_isolated: one JSON line per assignment, written as each ends."""
    import resource
    from dataclasses import asdict

    cap = int(memory_gb * 2**30)  # before any student code runs: an allocation past it is a MemoryError
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    with open(path, "a") as f:
        for a in assignments or ASSIGNMENTS:
            checks = grade_assignment(folder, a, hidden=hidden, timeout=timeout)
            f.write(json.dumps({"assignment": a, "checks": [asdict(c) for c in checks]}) + "\n")
            f.flush()


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


def gradescope_results(checks: list[Check]) -> dict:
    """Gradescope's results.json: one test per check; hidden checks visible once grades are published."""
    got, total = score(checks)
    tests = [dict(name=f"{c.assignment}: {c.name}", score=c.earned, max_score=c.points, output=c.message or "ok",
                  visibility="after_published" if c.hidden else "visible") for c in checks]
    return dict(score=got, max_score=total, tests=tests, visibility="visible", stdout_visibility="hidden",
                output=f"{got}/{total} points; the checks marked (hidden) are shown once grades are published")


def write_feedback(folder: Path, student: str, checks: list[Check]):
    """<student>.txt: the report a student reads; <student>.results.json: the same for Gradescope."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{student}.txt").write_text(f"{student}\n\n{report(checks)}\n")
    (folder / f"{student}.results.json").write_text(json.dumps(gradescope_results(checks), indent=1) + "\n")


# The written parts, graded by hand from their rubrics (hidden/rubric_aNN.md): points out of, and the
# most a student can get (a11's open tier adds 10 on top).
WRITTEN = {"a08_reading_the_loop": (20, 20), "a11_report": (20, 30)}


def read_written(path: Path) -> dict[str, dict[str, float]]:
    """The instructor's scores of the written parts: a CSV with a `student` column and one column per
    written part (WRITTEN), a blank cell for one not graded yet → {student: {part: points}}."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        unknown = sorted(set(reader.fieldnames or ()) - {"student", *WRITTEN})
        if "student" not in (reader.fieldnames or ()) or unknown:
            raise SystemExit(f"{path}: expected the columns student, {', '.join(WRITTEN)}"
                             + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        scores = {}
        for line, row in enumerate(reader, 2):
            scores[row["student"]] = {}
            for part, (_, most) in WRITTEN.items():
                cell = (row.get(part) or "").strip()
                if not cell:
                    continue
                try:
                    points = float(cell)
                except ValueError:
                    raise SystemExit(f"{path} line {line}: {part} is {cell!r}, not a number") from None
                if not 0 <= points <= most:
                    raise SystemExit(f"{path} line {line}: {part} is {cell}, outside 0–{most}")
                scores[row["student"]][part] = points
    return scores


def grade_class(root: Path, csv_path: Path, *, assignments=None, hidden: bool = True, timeout: float = 120,
                submission_timeout: float = 900, memory_gb: float = 8, jobs: int = 2, written: Path | None = None):
    """Grade every subfolder of `root` (one per student), each in its own subprocess, `jobs` at a
    time, and write one CSV row each. written: the hand-graded parts (read_written), added to the
    total; a part not graded yet is a blank cell, counted as 0 and named in `not_graded_yet`."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    students = sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not students:
        raise SystemExit(f"{root}: no submission folders in it (expected one subfolder per student)")
    names = assignments or ASSIGNMENTS
    by_hand = read_written(written) if written is not None else {}
    strangers = sorted(set(by_hand) - {s.name for s in students})
    if strangers:
        raise SystemExit(f"{written}: no submission folder for {', '.join(strangers)} in {root}")
    rows, start = [], time.perf_counter()
    options = dict(hidden=hidden, timeout=timeout, submission_timeout=submission_timeout, memory_gb=memory_gb)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        graded = list(tqdm(pool.map(lambda s: grade_isolated(s, names, **options), students), total=len(students),
                           desc="grading", unit="submission"))
    feedback = csv_path.with_name(f"{csv_path.stem}-feedback")
    for student, checks in zip(students, graded):
        write_feedback(feedback, student.name, checks)
        row = {"student": student.name}
        for a in names:
            row[a] = score([c for c in checks if c.assignment == a])[0]
        row["total"], row["out_of"] = score(checks)
        if written is not None:
            mine = by_hand.get(student.name, {})
            for part, (out_of, _) in WRITTEN.items():
                row[part] = mine.get(part, "")
                row["total"] += mine.get(part, 0)
                row["out_of"] += out_of
            row["not_graded_yet"] = " ".join(part for part in WRITTEN if part not in mine)
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
          f"{sum(bool(r['integrity']) for r in rows)} with an integrity problem → {csv_path}, {feedback}/")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", nargs="?", type=Path, help="a student's folder, or with --csv a folder of them")
    p.add_argument("--csv", type=Path, help="grade every subfolder of FOLDER and write the scores here")
    p.add_argument("--force", action="store_true", help="overwrite an existing --csv file")
    p.add_argument("--solution", action="store_true", help="grade the reference solution (the l2v library)")
    p.add_argument("--only", nargs="+", choices=ASSIGNMENTS, help="grade these assignments only")
    p.add_argument("--no-hidden", action="store_true", help="leave the hidden checks out (what students see)")
    p.add_argument("--timeout", type=float, default=120,
                   help="seconds one check, or the import of one file, may run (default 120)")
    p.add_argument("--submission-timeout", type=float, default=900,
                   help="with --csv: seconds one submission may take in all (default 900)")
    p.add_argument("--memory-gb", type=float, default=8, help="with --csv: address space of one submission's process")
    p.add_argument("--jobs", type=int, default=2, help="with --csv: submissions graded at once (default 2)")
    p.add_argument("--written", type=Path, help="with --csv: the hand-graded written parts (student, "
                   + ", ".join(WRITTEN) + "), added to each total")
    p.add_argument("--gradescope", type=Path, help="one student: also write Gradescope's results.json here")
    p.add_argument("--report-to", type=Path, help=argparse.SUPPRESS)  # grade_isolated's subprocess
    args = p.parse_args(argv)
    if args.report_to:
        _report_to(args.report_to, args.folder, args.only, hidden=not args.no_hidden, timeout=args.timeout,
                   memory_gb=args.memory_gb)
        return 0
    if args.solution == (args.folder is not None):
        p.error("give a FOLDER to grade, or --solution")
    if args.folder is not None and not args.folder.is_dir():
        p.error(f"{args.folder} is not a folder")
    options = dict(hidden=not args.no_hidden, timeout=args.timeout)
    if args.csv:
        feedback = args.csv.with_name(f"{args.csv.stem}-feedback")
        for made in (args.csv, feedback):
            if made.exists() and not args.force:
                p.error(f"{made} exists: pass --force to overwrite it")
        grade_class(args.folder, args.csv, assignments=args.only, submission_timeout=args.submission_timeout,
                    memory_gb=args.memory_gb, jobs=args.jobs, written=args.written, **options)
        return 0
    if args.folder is not None and not any(args.folder.glob("a[0-9][0-9]_*.py")) and any(
            p.is_dir() for p in args.folder.iterdir()):
        p.error(f"{args.folder} holds no aNN_*.py files but has subfolders: to grade a class, add --csv scores.csv")
    if args.gradescope:  # Gradescope runs one submission per container: isolate it all the same
        checks = grade_isolated(args.folder, args.only, submission_timeout=args.submission_timeout,
                                memory_gb=args.memory_gb, **options)
        args.gradescope.parent.mkdir(parents=True, exist_ok=True)
        args.gradescope.write_text(json.dumps(gradescope_results(checks), indent=1) + "\n")
    else:
        checks = grade(args.folder, args.only, **options)
    print(report(checks))
    got, total = score(checks)
    return 0 if got == total else 1


if __name__ == "__main__":
    sys.exit(main())
