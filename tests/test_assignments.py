"""Issue 8: the course assignments' grader, run as a student would run it.

- on the untouched stubs every check fails, each saying which function is not written yet;
- on the reference solution (`--solution`: the l2v library) every check passes;
- on a worked solution written from the docstrings alone (tests/assignment_solutions/) every check
  passes — the stubs can be solved as specified;
- on that solution with a classic mistake planted in each assignment, the grader names the mistake.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("peft")
ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "tutorials" / "assignments"
SOLUTIONS = Path(__file__).resolve().parent / "assignment_solutions"
STUBS = sorted(p.name for p in ASSIGNMENTS.glob("a[0-9][0-9]_*.py"))


def grade(folder: Path, *args) -> tuple[int, str]:
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder), *args],
                         capture_output=True, text=True, cwd=folder, timeout=600)
    return run.returncode, run.stdout + run.stderr


def counts(output: str) -> dict:
    return {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|error)", output)}


def student_copy(tmp_path: Path, plant: dict | None = None) -> Path:
    """The assignments folder as handed out, with the worked solution filled in (and mistakes planted)."""
    folder = tmp_path / "assignments"
    shutil.copytree(ASSIGNMENTS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in STUBS:
        text = (SOLUTIONS / name).read_text()
        for old, new in (plant or {}).get(name, []):
            assert old in text, f"{name}: the line to break is missing"
            text = text.replace(old, new)
        (folder / name).write_text(text)
    return folder


def test_every_stub_has_a_worked_solution():
    assert STUBS == sorted(p.name for p in SOLUTIONS.glob("a[0-9][0-9]_*.py"))
    assert [s[:3] for s in STUBS] == ["a01", "a02", "a04", "a05", "a06"]


def test_untouched_stubs_fail_every_check(tmp_path):
    folder = tmp_path / "assignments"
    shutil.copytree(ASSIGNMENTS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    code, out = grade(folder)
    n = counts(out)
    assert code == 1 and n.get("passed", 0) == 0 and n.get("error", 0) == 0 and n["failed"] >= 20, out[-2000:]
    assert out.count("is not written yet") >= n["failed"], out[-2000:]


def test_reference_solution_passes():
    code, out = grade(ASSIGNMENTS, "--solution")
    assert code == 0 and counts(out).get("failed", 0) == 0, out[-3000:]


def test_worked_solution_passes(tmp_path):
    code, out = grade(student_copy(tmp_path))
    assert code == 0 and counts(out)["passed"] >= 20, out[-3000:]


MISTAKES = {  # assignment: (the correct line, the planted mistake, what the grader must say)
    "a01_llama_block.py": ("return weight * x / torch.sqrt(", "return x / torch.sqrt(", "weight is missing"),
    "a02_bidirectional.py": ("dtype=torch.bool).tril()", "dtype=torch.bool).triu()", "yours is transposed"),
    "a04_lora.py": ("out + self.scaling * self.lora_B", "out + self.lora_B", "scaled by alpha / r"),
    "a05_mntp.py": ("hidden, labels = hidden[:, :-1], labels[:, 1:]", "pass", "that is BERT's loss"),
    "a06_simcse.py": ("F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T", "a @ b.T", "normalise a and b"),
}


def test_grader_names_planted_mistakes(tmp_path):
    folder = student_copy(tmp_path, {name: [(old, new)] for name, (old, new, _) in MISTAKES.items()})
    code, out = grade(folder)
    assert code == 1
    for name, (_, _, message) in MISTAKES.items():
        assert message in out, f"{name}: the grader did not say {message!r}\n{out[-3000:]}"
