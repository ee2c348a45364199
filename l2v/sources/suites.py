"""The built-in suites by name: what builds each and where it lives, `<cache>/suites/<name>-v<version>/`.

A suite is built once, into a temporary folder that takes its place only when every task is
written, then reused; a builder that changes bumps its version, so a stale copy is never read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..runtime.checks import L2VError
from ..runtime.files import atomic_folder
from . import dev, mini
from .fetch import cache_dir


@dataclass(frozen=True)
class Suite:
    build: Callable[[Path], None]  # writes every task folder into the given (empty) folder
    version: int


SUITES = {
    "l2v-mini": Suite(partial(mini.build, size="full"), mini.VERSION),
    "l2v-mini-quick": Suite(partial(mini.build, size="quick"), mini.VERSION),  # the same tasks, smaller samples
    "l2v-mini-smoke": Suite(partial(mini.build, size="smoke"), mini.VERSION),  # one task of each type, tiny
    "l2v-dev": Suite(dev.build, dev.VERSION),
}


def suite_folder(name: str = "l2v-mini") -> Path:
    if name not in SUITES:
        raise L2VError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return cache_dir() / "suites" / f"{name}-v{SUITES[name].version}"


def build_suite(name: str = "l2v-mini", force: bool = False) -> list[Path]:
    """Build (or reuse) every task folder of suite `name` (see SUITES) → the task folders, in a fixed order."""
    root = suite_folder(name)
    if force or not (root / "DONE").is_file():
        with atomic_folder(root) as tmp:
            SUITES[name].build(tmp)
            (tmp / "DONE").write_text("")
    return sorted(p for p in root.iterdir() if p.is_dir())
