"""Checks at the door: argument ranges, files read with errors that name the file and the line,
and finite-value checks on tensors. Nothing here is part of the recipe; it keeps bad input from
turning into a silently wrong result.

`L2VError` is a ValueError, so library users catch it as they would any bad-argument error; the
command line catches it and prints one line, `l2v <command>: error: …`, with exit status 2.
"""

from __future__ import annotations

import math
import signal
import warnings
from contextlib import contextmanager


class L2VError(ValueError):
    """Bad input: an argument out of range, an unreadable or inconsistent file. The message names it."""


class NonFiniteError(RuntimeError):
    """Training produced NaN or inf (loss, gradients or weights); nothing non-finite was written."""


# name -> (type, lowest, highest, lowest allowed?, highest allowed?); None: no bound on that side.
# One table for the API checks (`check_args`) and the command line's argparse types (`arg_type`).
RANGES = {
    "steps": (int, 1, None, True, True),
    "batch_size": (int, 1, None, True, True),
    "grad_accum": (int, 1, None, True, True),
    "max_length": (int, 2, None, True, True),  # at least one token besides BOS/EOS
    "lr": (float, 0.0, None, False, True),
    "warmup_steps": (int, 0, None, True, True),
    "weight_decay": (float, 0.0, None, True, True),
    "max_grad_norm": (float, 0.0, None, True, True),
    "eval_every": (int, 0, None, True, True),
    "save_every": (int, 0, None, True, True),
    "mask_prob": (float, 0.0, 1.0, False, True),  # 0 masks nothing: no loss to learn from
    "lora_r": (int, 1, None, True, True),
    "lora_alpha": (float, 0.0, None, False, True),
    "lora_dropout": (float, 0.0, 1.0, True, False),  # 1 would drop every input of the LoRA branch
    "dropout": (float, 0.0, 1.0, True, False),
    "chunk_size": (int, 1, None, True, True),  # GradCache: sentences (or triples) embedded per pass
}


def describe_range(name: str) -> str:
    kind, lo, hi, lo_ok, hi_ok = RANGES[name]
    parts = []
    if lo is not None:
        parts.append(f"{'≥' if lo_ok else '>'} {lo}")
    if hi is not None:
        parts.append(f"{'≤' if hi_ok else '<'} {hi}")
    return f"{'an integer' if kind is int else 'a number'} {' and '.join(parts)}"


def _in_range(name: str, value) -> bool:
    kind, lo, hi, lo_ok, hi_ok = RANGES[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind is int and not float(value).is_integer():
        return False
    if not math.isfinite(value):
        return False
    if lo is not None and (value < lo if lo_ok else value <= lo):
        return False
    if hi is not None and (value > hi if hi_ok else value >= hi):
        return False
    return True


def check_args(**values):
    """Raise L2VError for the first argument outside its allowed range (None means "use the default")."""
    for name, value in values.items():
        if value is not None and not _in_range(name, value):
            raise L2VError(f"{name} must be {describe_range(name)}, got {value!r}")


def arg_type(name: str):
    """An argparse `type=` that parses and range-checks, so `--steps 0` is a usage error naming --steps."""
    import argparse

    kind = RANGES[name][0]

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {describe_range(name)}, got {text!r}") from None
        if not _in_range(name, value):
            raise argparse.ArgumentTypeError(f"must be {describe_range(name)}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
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
