"""Helpers for the graders: comparisons whose failure messages teach.

A wrong answer is compared with the reference and with the answers that well-known mistakes
produce; if it matches a mistake, the message names it. Otherwise the message gives the size and
place of the largest difference.
"""

import importlib

import torch

SOLUTION = False  # set by conftest.py from --solution: grade the reference solution (the l2v library)


def load(name: str):
    """The student's module, or (with --solution) the reference implementation of the same functions."""
    if SOLUTION:
        import reference

        return getattr(reference, name)
    return importlib.import_module(name)


def require(condition, message: str):
    """Fail with `message` alone (the grader's conftest shows it without a traceback)."""
    if not condition:
        raise AssertionError(message)


def _close(a, b, atol, rtol) -> bool:
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol, rtol=rtol)


def expect_close(actual, expected, what: str, *, mistakes: dict | None = None, atol=1e-5, rtol=1e-4):
    """Fail with a teaching message unless `actual` equals `expected` (within float32 rounding).
    mistakes: {explanation: the value that mistake would give}."""
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{what}: expected a torch.Tensor, got {type(actual).__name__}")
    expected = expected.detach()
    actual = actual.detach()
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: wrong shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if _close(actual, expected, atol, rtol):
        return
    for explanation, wrong in (mistakes or {}).items():
        if _close(actual, wrong.detach(), atol, rtol):
            raise AssertionError(f"{what}: {explanation}")
    diff = (actual.float() - expected.float()).abs()
    where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    raise AssertionError(f"{what}: max |yours − reference| = {diff.max().item():.3g} at index {where} "
                         f"(yours {actual.flatten()[diff.argmax()].item():.6g}, reference "
                         f"{expected.flatten()[diff.argmax()].item():.6g})")
