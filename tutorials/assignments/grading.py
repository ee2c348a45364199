"""Helpers for the graders: comparisons whose failure messages teach.

A wrong answer is compared with the reference and with the answers that well-known mistakes
produce; if it matches a mistake, the message names it. Otherwise the message gives the size and
place of the largest difference.
"""

import ast
import importlib
import re
import traceback
import types
from pathlib import Path

import torch

SOLUTION = False  # set by conftest.py from --solution: grade the reference solution (the l2v library)
SUBMISSION: dict = {}  # assignment -> module, set by grade.py while it grades one student's folder

# What each assignment asks the student to write, and where that answer already exists: l2v's own
# implementation, the grader's reference library, the worked solutions. Using any of these is not
# doing the assignment, so its checks score zero (grade.py, conftest.py).
EVERYWHERE = ("assignment_solutions", "tests.assignment_solutions", "reference")
FORBIDDEN = {
    "a01_llama_block": ("l2v.model", "l2v.Transformer", "l2v.load_model", "l2v.formats.loading", "transformers"),
    "a02_bidirectional": ("l2v.model", "l2v.build_attention_mask", "l2v.tools.analyze", "transformers"),
    "a03_pooling": ("l2v.pooling", "l2v.pool", "l2v.encoder", "l2v.Encoder"),
    "a04_lora": ("l2v.lora", "l2v.formats.peft", "peft"),
    "a05_mntp": ("l2v.mntp", "transformers"),
    "a06_simcse": ("l2v.simcse", "l2v.supervised"),
    "a07_evaluation": ("l2v.evaluate", "scipy", "sklearn", "pytrec_eval", "mteb"),
    "a09_gradcache": ("l2v.gradcache", "l2v.simcse", "l2v.supervised"),
    "a10_supervised": ("l2v.contrastive", "l2v.supervised", "l2v.simcse"),
    # The capstone's adapters must call the student's own pieces, not l2v's (l2v.train's Pieces and
    # runs are what it plugs into, so l2v.train and l2v.mntp.run_mntp stay allowed).
    "a11_capstone": ("l2v.model.build_attention_mask", "l2v.build_attention_mask", "l2v.lora", "l2v.pooling",
                     "l2v.pool", "l2v.mntp.mntp_loss", "l2v.contrastive", "l2v.simcse", "l2v.supervised",
                     "l2v.evaluate", "transformers", "peft", "scipy", "sklearn"),
}
# An assignment that imports the student's earlier files: grade.py loads them from the same folder.
BUILDS_ON = {"a11_capstone": ("a02_bidirectional", "a03_pooling", "a04_lora", "a05_mntp", "a06_simcse",
                              "a07_evaluation")}


PACKAGES = {"transformers", "peft", "scipy", "sklearn", "pytrec_eval", "mteb", "assignment_solutions"}


def load(name: str):
    """The student's module, or (with --solution) the reference implementation of the same functions."""
    if name in SUBMISSION:
        return SUBMISSION[name]
    if SOLUTION:
        try:
            import reference
        except ModuleNotFoundError:
            raise SystemExit("--solution needs reference.py, which is the instructor's (not in the hand-out)") from None
        return getattr(reference, name)
    return importlib.import_module(name)


def message(e: BaseException) -> str:
    """One line for a failed check: the grader's teaching message, or what broke and where."""
    if isinstance(e, NotImplementedError):
        return f"{e} is not written yet — open its file, read the docstring, replace the TODO"
    if isinstance(e, AssertionError):
        return str(e) or "a check failed (an assert without a message)"
    frames = traceback.extract_tb(e.__traceback__)
    yours = [f for f in frames if re.fullmatch(r"a\d\d_\w+\.py", Path(f.filename).name)]
    if yours:
        where = f" at {Path(yours[-1].filename).name} line {yours[-1].lineno}"
    else:  # raised in the grader, usually from what your function returned
        where = f" in the grader ({Path(frames[-1].filename).name} line {frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}{where}: {e}"


def _matches(dotted: str, banned) -> str | None:
    return next((b for b in banned if dotted == b or dotted.startswith(b + ".")), None)


def integrity_problem(name: str, module=None) -> str | None:
    """Why `name`'s submission may not score (it uses an existing answer), or None.

    Read twice: the source (imports anywhere, `l2v.mntp.…` attribute chains, module names in
    strings for importlib) and the loaded module (names bound to objects defined in a banned
    module, e.g. `from l2v import pool`, whose home is l2v.pooling)."""
    if name not in FORBIDDEN:
        return None
    if module is None:
        module = load(name)
    banned = FORBIDDEN[name] + EVERYWHERE
    used = set()
    path = getattr(module, "__file__", None)
    if path and Path(path).is_file():
        tree = ast.parse(Path(path).read_text(), filename=path)
        aliases = {}  # local name -> the module or object it was imported as
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    used.add(a.name)
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module:
                used.add(node.module)
                for a in node.names:
                    used.add(f"{node.module}.{a.name}")
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):  # l2v.mntp.mask_tokens(...) after `import l2v`
                parts = []
                while isinstance(node, ast.Attribute):
                    parts.append(node.attr)
                    node = node.value
                if isinstance(node, ast.Name) and node.id in aliases:
                    used.add(".".join([aliases[node.id], *reversed(parts)]))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):  # importlib.import_module("l2v.mntp")
                if re.fullmatch(r"\w+(\.\w+)+", node.value) or node.value in PACKAGES:
                    used.add(node.value)
    for value in vars(module).values():
        if isinstance(value, types.ModuleType):
            used.add(value.__name__)
        elif isinstance(getattr(value, "__module__", None), str) and hasattr(value, "__name__"):
            used.add(f"{value.__module__}.{value.__name__}")
    hits = sorted({b for b in map(lambda d: _matches(d, banned), used) if b})
    if not hits:
        return None
    return (f"integrity: {name}.py uses {', '.join(hits)} — the existing answer to what this assignment asks "
            "you to write (l2v's own code, the grader's reference or the worked solution): 0 points for its checks")


def grader_seed() -> int:
    """The instructor's seed for the hidden checks' inputs, read when they run: L2V_GRADER_SEED (0 when
    unset). The repository is public, so the hidden checks' code is too; their inputs come from this
    seed, and each check computes its expected value from them (none is stored), so reading the code
    does not give the answers. autograder.py writes a seed of its own into each zip."""
    import os

    value = os.environ.get("L2V_GRADER_SEED", "0")
    if not value.isdigit():
        raise SystemExit(f"L2V_GRADER_SEED={value!r}: give a non-negative whole number")
    return int(value)


def draw(offset: int) -> torch.Generator:
    """A generator for one hidden check's inputs: the instructor's seed, and the check's own offset."""
    return torch.Generator().manual_seed(1000 * grader_seed() + offset)


def require(condition, message: str):
    """Fail with `message` alone (the grader's conftest shows it without a traceback)."""
    if not condition:
        raise AssertionError(message)


def _close(a, b, atol, rtol) -> bool:
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol, rtol=rtol, equal_nan=True)


def expect_close(actual, expected, what: str, *, mistakes: dict | None = None, atol=1e-5, rtol=1e-4):
    """Fail with a teaching message unless `actual` equals `expected` (within float32 rounding).
    mistakes: {explanation: the value that mistake would give}; checked before the shape, since a
    mistake may give another shape."""
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{what}: expected a torch.Tensor, got {type(actual).__name__}")
    expected = expected.detach()
    actual = actual.detach()
    if _close(actual, expected, atol, rtol):
        return
    for explanation, wrong in (mistakes or {}).items():
        if _close(actual, wrong.detach(), atol, rtol):
            raise AssertionError(f"{what}: {explanation}")
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: wrong shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if torch.isnan(actual).any() and not torch.isnan(expected).any():
        where = tuple(int(i) for i in torch.unravel_index(torch.isnan(actual).flatten().nonzero()[0, 0], actual.shape))
        raise AssertionError(f"{what}: NaN in yours at index {where} (a softmax or a division over nothing?)")
    diff = (actual.float() - expected.float()).abs()
    where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    raise AssertionError(f"{what}: max |yours − reference| = {diff.max().item():.3g} at index {where} "
                         f"(yours {actual.flatten()[diff.argmax()].item():.6g}, reference "
                         f"{expected.flatten()[diff.argmax()].item():.6g})")


def expect_gradient(loss, inputs: dict, reference_loss, what: str):
    """`loss` must carry the reference's gradient back to each of `inputs` ({name: tensor}): a value
    alone (.item(), .detach(), torch.no_grad()) trains nothing, and a loss equal in value may still
    push the weights another way."""
    if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
        raise AssertionError(f"{what} returns a value with no gradient (.item(), .detach() or torch.no_grad()?): "
                             f"backward() could not train anything with it")
    names, tensors = list(inputs), list(inputs.values())
    got = torch.autograd.grad(loss, tensors, allow_unused=True)
    want = torch.autograd.grad(reference_loss, tensors)
    for name, g, w in zip(names, got, want):
        if g is None:
            raise AssertionError(f"{what}: no gradient reaches {name} (is it cut off from the loss?)")
        expect_close(g, w, f"{what}: the gradient with respect to {name}")
