"""Checks at the door: the errors l2v raises, value ranges, finite-value checks on tensors, and
signals held back while a few lines must happen together. (Files read with errors that name the
file and the line: files.py.) Nothing here is part of the recipe; it keeps bad input from
turning into a silently wrong result.

`L2VError` is a ValueError, so library users catch it as they would any bad-argument error; the
command line catches it and prints one line, `l2v <command>: error: …`, with exit status 2.
"""

from __future__ import annotations

import math
import signal
import warnings
from contextlib import contextmanager
from dataclasses import dataclass


class L2VError(ValueError):
    """Bad input: an argument out of range, an unreadable or inconsistent file. The message names it."""


class NonFiniteError(RuntimeError):
    """Training produced NaN or inf (loss, gradients or weights); nothing non-finite was written."""


@dataclass(frozen=True)
class Range:
    """The values a number may take: `Range(int, 1)` is an integer ≥ 1, `Range(float, 0, 1, high_ok=False)`
    a number in [0, 1). Run settings declare theirs (settings.py); `in` tests a value, str() says it."""

    kind: type  # int or float
    low: float | None = None  # None: no bound on that side
    high: float | None = None
    low_ok: bool = True  # the bound itself is allowed
    high_ok: bool = True

    def __contains__(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.kind is int and not isinstance(value, int):  # 10.0 steps would fail later, deep inside torch
            return False
        if self.low is not None and (value < self.low if self.low_ok else value <= self.low):
            return False
        return self.high is None or (value <= self.high if self.high_ok else value < self.high)

    def __str__(self) -> str:
        parts = [f"{'≥' if self.low_ok else '>'} {self.low}"] if self.low is not None else []
        parts += [f"{'≤' if self.high_ok else '<'} {self.high}"] if self.high is not None else []
        return f"{'an integer' if self.kind is int else 'a number'} {' and '.join(parts)}"


# The embedding side's numbers (Encoder, `l2v encode`, `l2v eval`, `l2v plan`); training settings
# carry their own ranges (settings.py).
RANGES = {
    "batch_size": Range(int, 1),
    "max_length": Range(int, 2),  # at least one token besides BOS/EOS
    "chunk_size": Range(int, 1),  # GradCache: sentences (or triples) embedded per pass
}


def check_range(name: str, value, allowed: Range):
    """L2VError naming `name` when value is outside `allowed` (None means "use the default")."""
    if value is not None and value not in allowed:
        raise L2VError(f"{name} must be {allowed}, got {value!r}")


def check_args(**values):
    """check_range for each keyword, by its RANGES entry."""
    for name, value in values.items():
        check_range(name, value, RANGES[name])


def arg_type(allowed: Range | str):
    """An argparse `type=` that parses and range-checks, so `--steps 0` is a usage error naming --steps."""
    import argparse

    allowed = RANGES[allowed] if isinstance(allowed, str) else allowed

    def parse(text: str):
        try:
            value = allowed.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    parse.__name__ = allowed.kind.__name__  # argparse names the type in its messages
    return parse


# ---------------------------------------------------------------- tensors


def first_non_finite(named_tensors) -> str | None:
    """The name of the first floating tensor holding NaN or inf, else None."""
    import torch

    for name, t in named_tensors:
        if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def warn_max_length(max_length: int, config, what: str = "max_length"):
    limit = getattr(config, "max_position_embeddings", None)
    if limit and max_length > limit:
        warnings.warn(f"{what}={max_length} is above the model's max_position_embeddings={limit}: positions past "
                      f"{limit} were never trained and embeddings of long texts may be poor", stacklevel=3)


@contextmanager
def hold_signals():
    """Hold back SIGINT and SIGTERM for a few lines that must happen together (both or neither);
    one that arrives meanwhile is delivered right after. (Python runs signal handlers in the main
    thread only, so elsewhere there is nothing to hold.)"""
    import os
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append((signum, frame)))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum, frame in pending[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)  # e.g. Python's default SIGINT handler: KeyboardInterrupt here
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)
