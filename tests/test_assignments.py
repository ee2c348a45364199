"""Issues 8 and 18: the course assignments' graders, and the kit an instructor grades with.

- the untouched stubs fail every visible check, each saying in one clean line what is not written;
- the reference solution (the l2v library) and a worked solution written from the docstrings alone
  (tests/assignment_solutions/) score full marks;
- mutation testing: that worked solution with one mistake planted (MUTANTS, across all ten graded
  assignments) loses points, and the grader's message names the mistake;
- the kit: points, the grading command, the CSV over a class, hidden checks, the hand-out and
  the integrity rule each have a test.

Mutants are graded in this process (tutorials/assignments/grade.py), so the whole table runs in
well under a minute; only the pytest-as-a-student checks start a new Python.
"""

import csv
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("scipy")
ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "tutorials" / "assignments"
SOLUTIONS = Path(__file__).resolve().parent / "assignment_solutions"
STUBS = sorted(p.stem for p in ASSIGNMENTS.glob("a[0-9][0-9]_*.py"))
sys.path.insert(0, str(ASSIGNMENTS))
grade = pytest.importorskip("grade")  # tutorials/assignments/grade.py
handout = pytest.importorskip("handout")


def pytest_run(folder: Path, *args) -> tuple[int, str, dict]:
    """pytest in `folder`, as a student runs it → (exit code, output, {file: {check: message or None}})."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    xml = folder / "report.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *args],
                         capture_output=True, text=True, cwd=folder, timeout=600, env=env)
    results = {}
    for case in ElementTree.parse(xml).iter("testcase"):
        failure = case.find("failure")
        results.setdefault(case.get("classname").split(".")[-1], {})[case.get("name")] = (
            None if failure is None else failure.get("message", ""))
    return run.returncode, run.stdout + run.stderr, results


def submission(folder: Path, names=STUBS, plant=()) -> Path:
    """A student's folder: the worked solutions of `names`, with (old, new) replacements planted."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        text = (SOLUTIONS / f"{name}.py").read_text()
        for old, new in plant:
            if old in text:
                text = text.replace(old, new)
        (folder / f"{name}.py").write_text(text)
    return folder


# ---------------------------------------------------------------- as a student runs it (pytest)


def test_every_stub_has_a_worked_solution():
    assert STUBS == sorted(p.stem for p in SOLUTIONS.glob("a[0-9][0-9]_*.py"))
    assert [s[:3] for s in STUBS] == ["a01", "a02", "a03", "a04", "a05", "a06", "a07", "a09", "a10", "a11"]  # a08 is written


def test_hand_out_under_pytest(tmp_path):
    """The hand-out as a student runs it: solved, half-solved, one mistake, one integrity problem, stubs."""
    out_dir = handout.build(tmp_path / "handout")
    folder = out_dir / "tutorials" / "assignments"
    submission(folder, ["a01_llama_block", "a02_bidirectional", "a04_lora"])
    submission(folder, ["a05_mntp"], [("hidden, labels = hidden[:, :-1], labels[:, 1:]", "pass")])
    submission(folder, ["a03_pooling"], [("import torch\n", "import torch\nfrom l2v.pooling import mean_pool as _m\n")])
    code, out, results = pytest_run(folder)  # a06, a07, a09, a10 and a11 stay untouched stubs
    assert code == 1, out[-3000:]
    for name in ("a01_llama_block", "a02_bidirectional", "a04_lora"):
        assert results[f"test_{name}"] and not any(results[f"test_{name}"].values()), results[f"test_{name}"]
    a05 = results["test_a05_mntp"]
    assert sorted(c for c, m in a05.items() if m) == ["test_loss_gradient", "test_loss_matches_transformers"], a05
    assert all("integrity: a03_pooling.py uses l2v.pooling" in m for m in results["test_a03_pooling"].values())
    stubs = {f"{f}::{c}": m for f in ("test_a06_simcse", "test_a07_evaluation", "test_a09_gradcache", "test_a10_supervised",
                                      "test_a11_capstone") for c, m in results[f].items()
             if not (f == "test_a11_capstone" and c == "test_piece_in_simcse[pool]")}
    assert all(m and "is not written yet — " in m for m in stubs.values()), stubs
    # the capstone's pooling is the student's a03, which uses l2v's: that piece says so, naming the stage
    assert "integrity: a03_pooling.py uses l2v.pooling" in results["test_a11_capstone"]["test_piece_in_simcse[pool]"]
    # one clean line per failure: the message once, no traceback, no chained exception, no summary repeat
    failed = sum(m is not None for r in results.values() for m in r.values())
    assert len(re.findall(r"^[\w.]+ is not written yet — .*$", out, flags=re.M)) == len(stubs), out[-3000:]
    assert out.count("that is BERT's loss") == 1
    assert out.count("integrity: a03_pooling.py") == len(results["test_a03_pooling"]) + 1  # + the capstone's pool
    assert "During handling" not in out and "Traceback" not in out and "raise NotImplementedError" not in out
    assert f"{failed} failed" in out


def test_untouched_stubs_score_zero():
    checks = grade.grade(ASSIGNMENTS, hidden=False)
    assert len(checks) >= 40 and grade.score(checks)[0] == 0
    assert all(re.fullmatch(r"[\w.]+ is not written yet — open its file, read the docstring, replace the TODO", c.message)
               for c in checks), [c.message for c in checks]


# ---------------------------------------------------------------- full marks


def test_reference_solution_scores_full_marks():
    checks = grade.grade(None)
    failed = [f"{c.assignment}:{c.name}: {c.message}" for c in checks if c.message]
    assert not failed and len(checks) >= 50, failed


def test_worked_solution_scores_full_marks(tmp_path):
    checks = grade.grade(submission(tmp_path / "student"))
    failed = [f"{c.assignment}:{c.name}: {c.message}" for c in checks if c.message]
    assert not failed and any(c.hidden for c in checks), failed
    assert grade.score(checks)[0] == grade.score(checks)[1] >= 100


# ---------------------------------------------------------------- mutation testing

MUTANTS = [  # (assignment, mistake, [(the correct text, the planted mistake)], what the grader must say)
    ("a01_llama_block", "no weight", [("return weight * x / torch.sqrt(", "return x / torch.sqrt(")], "weight is missing"),
    ("a01_llama_block", "eps outside the root", [("torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)",
                                                  "(torch.sqrt(x.pow(2).mean(-1, keepdim=True)) + eps)")],
     "eps belongs inside the square root"),
    ("a01_llama_block", "mean over the batch", [("x.pow(2).mean(-1,", "x.pow(2).mean(0,")], "over the last dimension"),
    ("a01_llama_block", "rotation sign", [("torch.cat((-x2, x1), dim=-1)", "torch.cat((x2, -x1), dim=-1)")],
     "rotates the other way"),
    ("a01_llama_block", "GPT-J pairs", [("x1, x2 = x.chunk(2, dim=-1)\n    return x * cos + torch.cat((-x2, x1), dim=-1) * sin",
                                         "return x * cos + torch.stack((-x[..., 1::2], x[..., ::2]), -1).flatten(-2) * sin")],
     "not neighbours 2k, 2k+1"),
    ("a01_llama_block", "kv heads tiled", [("k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)",
                                            "k.repeat(1, n_rep, 1, 1), v.repeat(1, n_rep, 1, 1)")], "not repeat (which tiles)"),
    ("a01_llama_block", "scaled by d", [("/ q.shape[-1] ** 0.5", "/ q.shape[-1]")], "divided by √d"),
    ("a01_llama_block", "mask ignored", [('scores.masked_fill(~mask, float("-inf"))', "scores")], "the mask is ignored"),
    ("a01_llama_block", "mask transposed", [('masked_fill(~mask,', "masked_fill(~mask.transpose(-2, -1),")],
     "reads it transposed"),
    ("a01_llama_block", "softmax over queries", [(".softmax(-1) @ v", ".softmax(-2) @ v")], "softmax runs over the keys"),
    ("a01_llama_block", "silu on up", [("F.silu(F.linear(x, gate_w)) * F.linear(x, up_w)",
                                        "F.linear(x, gate_w) * F.silu(F.linear(x, up_w))")], "silu goes on the gate"),
    ("a01_llama_block", "relu", [("F.linear(F.silu(", "F.linear(F.relu(")], "not ReLU"),
    ("a01_llama_block", "no rotary in the block", [("attention(apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v, mask)",
                                                    "attention(q, k, v, mask)")], "must be rotated"),
    ("a01_llama_block", "norms swapped", [('w["input_layernorm.weight"]', "W_POST"), ('w["post_attention_layernorm.weight"]',
                                          'w["input_layernorm.weight"]'), ("W_POST", 'w["post_attention_layernorm.weight"]')],
     "yours are swapped"),
    ("a01_llama_block", "second residual lost (not listed)", [("return x + swiglu(m,", "return swiglu(m,")],
     "decoder_block: max |yours − reference|"),
    ("a02_bidirectional", "upper triangle", [("dtype=torch.bool).tril()", "dtype=torch.bool).triu()")], "yours is transposed"),
    ("a02_bidirectional", "no diagonal", [("return mask | torch.eye(T, dtype=torch.bool)", "return mask")],
     "padding rows must still see themselves"),
    ("a02_bidirectional", "padding on queries", [("padding_mask.bool()[:, None, None, :]", "padding_mask.bool()[:, None, :, None]")],
     "mask padding on the keys"),
    ("a02_bidirectional", "always causal", [("if causal:", "if True:")], "LLM2Vec removes the causal mask"),
    ("a02_bidirectional", "cosine along positions", [("dim=-1) for c, b in zip", "dim=0) for c, b in zip")],
     "not along positions"),
    ("a02_bidirectional", "embeddings dropped", [("zip(causal, bidirectional)", "zip(causal[1:], bidirectional[1:])")],
     "keep the embeddings"),
    ("a02_bidirectional", "both runs causal", [("causal=False, output_hidden_states=True", "causal=True, output_hidden_states=True")],
     "every cosine is 1"),
    ("a03_pooling", "instruction by position", [("seen = attention_mask.cumsum(1)",
                                                 "seen = torch.arange(1, attention_mask.shape[1] + 1).expand_as(attention_mask)")],
     "do not start at position 0"),
    ("a03_pooling", "instruction kept", [("(seen > n_prefix[:, None])", "(seen > 0)")], "nothing was left out"),
    ("a03_pooling", "BOS kept", [("(seen > n_prefix[:, None])", "(seen >= n_prefix[:, None])")], "one real token too few"),
    ("a03_pooling", "bool mask", [(").to(attention_mask.dtype)", ")")], "attention_mask's dtype"),
    ("a03_pooling", "mean over T", [("return (hidden * m).sum(1) / m.sum(1)", "return (hidden * m).sum(1) / m.shape[1]")],
     "not by T"),
    ("a03_pooling", "padding averaged", [("return (hidden * m).sum(1) / m.sum(1)", "return hidden.mean(1)")],
     "padding and instruction were averaged in"),
    ("a03_pooling", "weights by position", [("w = (pool_mask.cumsum(1) * pool_mask)",
                                             "w = (torch.arange(1, pool_mask.shape[1] + 1) * pool_mask)")],
     "not positions in the padded row"),
    ("a03_pooling", "weights not normalised", [("return (hidden * w).sum(1) / w.sum(1)\n",
                                                "return (hidden * w).sum(1) / pool_mask.sum(1, keepdim=True)\n")],
     "divide by the sum of the weights"),
    ("a03_pooling", "eos at the last position", [("return hidden[rows, last]", "return hidden[:, -1]")], "padded on the right"),
    ("a03_pooling", "eos at count − 1", [("return hidden[rows, last]", "return hidden[rows, attention_mask.sum(1) - 1]")],
     "not at (its number of real tokens) − 1"),
    ("a03_pooling", "eos not checked", [("    if missing:\n", "    if False:\n")], "returned a vector anyway"),
    ("a04_lora", "no scaling", [("out + self.scaling * self.lora_B", "out + self.lora_B")], "scaled by alpha / r"),
    ("a04_lora", "r / alpha", [("self.scaling = alpha / r", "self.scaling = r / alpha")], "scaling is alpha / r"),
    ("a04_lora", "B random", [("nn.init.zeros_(self.lora_B.weight)", "pass")], "B starts at zero"),
    ("a04_lora", "A zero", [("nn.init.zeros_(self.lora_B.weight)",
                             "nn.init.zeros_(self.lora_B.weight); nn.init.zeros_(self.lora_A.weight)")], "A starts random"),
    ("a04_lora", "A tiny normal", [("nn.init.zeros_(self.lora_B.weight)",
                                    "nn.init.zeros_(self.lora_B.weight); nn.init.normal_(self.lora_A.weight, std=0.01)")],
     "initialised like nn.Linear"),
    ("a04_lora", "weight copied", [("self.weight = base.weight\n", "self.weight = nn.Parameter(base.weight.detach().clone())\n")],
     "not a copy"),
    ("a04_lora", "weight not frozen", [("self.weight.requires_grad = False", "pass")], "frozen"),
    ("a04_lora", "branch after merge", [("return out if self.merged else out + self.scaling",
                                         "return out + self.scaling")], "must not add the LoRA branch again"),
    ("a04_lora", "nothing frozen", [('p.requires_grad = "lora_A" in name or "lora_B" in name', "pass")],
     "only LoRA's A and B may train"),
    ("a04_lora", "targets ignored", [("name in targets", 'name in ("q_proj",)')], "wrapped modules differ from peft's"),
    ("a05_mntp", "BERT loss", [("hidden, labels = hidden[:, :-1], labels[:, 1:]", "pass")], "that is BERT's loss"),
    ("a05_mntp", "shift backwards", [("hidden[:, :-1], labels[:, 1:]", "hidden[:, 1:], labels[:, :-1]")],
     "shifted the wrong way"),
    ("a05_mntp", "summed loss", [("labels[where])", 'labels[where], reduction="sum")')], "not the sum"),
    # A loss equal in value that cannot train (issue 27's held-out mutant): only its gradient shows it.
    ("a05_mntp", "loss as a number", [("return F.cross_entropy(lm_head(hidden[where]), labels[where])",
                                       "return F.cross_entropy(lm_head(hidden[where]), labels[where]).item()")],
     "returns a value with no gradient"),
    ("a05_mntp", "loss detached", [("return F.cross_entropy(lm_head(hidden[where]), labels[where])",
                                    "return F.cross_entropy(lm_head(hidden[where]), labels[where]).detach()")],
     "returns a value with no gradient"),
    ("a05_mntp", "hidden detached", [("lm_head(hidden[where])", "lm_head(hidden[where].detach())")],
     "no gradient reaches hidden"),
    ("a05_mntp", "position 0 allowed", [("eligible[:, 0] = False", "pass")], "position 0 was selected"),
    ("a05_mntp", "specials allowed", [("eligible = ~torch.isin(ids, torch.tensor(sorted(special_ids)))",
                                       "eligible = torch.ones_like(ids, dtype=torch.bool)")], "a special token"),
    ("a05_mntp", "labels 0", [("torch.full_like(ids, IGNORE))", "torch.zeros_like(ids))")], "no label is IGNORE"),
    ("a05_mntp", "labels from inputs", [("return inputs, labels", "return inputs, torch.where(selected, inputs, labels)")],
     "not the input after masking"),
    ("a05_mntp", "ids changed in place", [("inputs = torch.where(selected & (u < 0.8), torch.full_like(ids, mask_token_id), ids)",
                                           "ids[selected & (u < 0.8)] = mask_token_id\n    inputs = ids")],
     "changed the ids tensor it was given"),
    ("a05_mntp", "no 10% unchanged", [("selected & (u < 0.8)", "selected")], "expected 0.8 / 0.1 / 0.1"),
    ("a05_mntp", "all masked", [("selected & (u < 0.8)", "selected"), ("inputs = torch.where(selected & (u >= 0.8)", "pass  #")],
     "the Mistral recipe"),
    ("a05_mntp", "global RNG", [("torch.randint(vocab_size, ids.shape, generator=generator)", "torch.randint(vocab_size, ids.shape)")],
     "draw every random number with generator"),
    ("a05_mntp", "one random token", [("torch.randint(vocab_size, ids.shape, generator=generator)",
                                       "torch.randint(vocab_size, (1,), generator=generator).expand(ids.shape)")],
     "not one for the whole batch"),
    ("a05_mntp", "prob ignored", [("< prob)", "< 0.15)")], "expected prob = 0.2"),
    ("a05_mntp", "random ids too small", [("torch.randint(vocab_size, ids.shape", "torch.randint(vocab_size // 4, ids.shape")],
     "mostly small ids"),
    ("a06_simcse", "dot products", [("F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T", "a @ b.T")], "normalise a and b"),
    ("a06_simcse", "divided by scale", [(".T * scale", ".T / scale")], "do not divide"),
    ("a06_simcse", "symmetric loss", [("return F.cross_entropy(scores, torch.arange(len(a)))",
                                       "return (F.cross_entropy(scores, torch.arange(len(a))) + "
                                       "F.cross_entropy(scores.T, torch.arange(len(a)))) / 2")], "one direction only"),
    ("a06_simcse", "b → a", [("F.cross_entropy(scores, torch.arange", "F.cross_entropy(scores.T, torch.arange")],
     "the transposed score matrix"),
    ("a06_simcse", "constant scale", [(".T * scale", ".T * 20.0")], "use the argument"),
    ("a09_gradcache", "no RNG replay", [("        torch.set_rng_state(state)\n", "")], "restore it"),
    ("a09_gradcache", "step 1 with autograd", [("    with torch.no_grad():\n        for chunk in chunks:",
                                               "    if True:\n        for chunk in chunks:")],
     "under torch.no_grad()"),
    ("a09_gradcache", "first rows of g", [("out.backward(g[start : start + len(chunk)])", "out.backward(g[: len(chunk)])")],
     "the gradient with chunks of"),
    ("a10_supervised", "no hard negatives", [("torch.cat([p, n])", "p")], "the hard negatives are missing"),
    ("a10_supervised", "divided by scale", [(".T * scale", ".T / scale")], "do not divide"),
    ("a10_supervised", "constant scale", [(".T * scale", ".T * 20.0")], "use the scale argument"),
    ("a10_supervised", "instructed documents", [('[t["positive"] for t in triples]',
                                                 '[[instruction, t["positive"]] for t in triples]')],
     "documents carry no instruction"),
    ("a06_simcse", "one view detached", [("F.normalize(b, dim=-1).T", "F.normalize(b.detach(), dim=-1).T")],
     "no gradient reaches b"),
    ("a06_simcse", "pooled over attention_mask", [("(batch.input_ids, batch.attention_mask, batch.pool_mask)",
                                                   "(batch.input_ids, batch.attention_mask, batch.attention_mask)")],
     "pooled over attention_mask"),
    ("a06_simcse", "masks swapped", [("(batch.input_ids, batch.attention_mask, batch.pool_mask)",
                                      "(batch.input_ids, batch.pool_mask, batch.attention_mask)")], "are swapped"),
    ("a06_simcse", "two passes", [("return encoder.embed(doubled).chunk(2)", "return encoder.embed(batch), encoder.embed(batch)")],
     "was called 2 times"),
    ("a06_simcse", "interleaved", [("torch.cat([t, t])", "t.repeat_interleave(2, 0)")], "not repeat_interleave"),
    ("a06_simcse", "distance not squared", [("(a - b).pow(2).sum(-1).mean()", "(a - b).norm(dim=-1).mean()")],
     "SQUARED distance"),
    ("a06_simcse", "mean over N·D", [("(a - b).pow(2).sum(-1).mean()", "(a - b).pow(2).mean()")], "not over all N·D numbers"),
    ("a06_simcse", "diagonal kept", [("offset=1", "offset=0")], "only pairs of DIFFERENT vectors"),
    ("a06_simcse", "t = 1", [("(-2 *", "(-1 *")], "(t = 2)"),
    ("a07_evaluation", "ordinal ranks", [("ranks[order[k]] = (i + j) / 2 + 1", "ranks[order[k]] = k + 1")],
     "breaks ties by order"),
    ("a07_evaluation", "min ranks", [("ranks[order[k]] = (i + j) / 2 + 1", "ranks[order[k]] = i + 1")], "not the lowest one"),
    ("a07_evaluation", "Pearson of values", [("ra, rb = _ranks([float(v) for v in a]), _ranks([float(v) for v in b])",
                                              "ra, rb = [float(v) for v in a], [float(v) for v in b]")],
     "Pearson's correlation of the values"),
    ("a07_evaluation", "exponential gain", [("qrels.get(d, 0) / math.log2", "(2 ** qrels.get(d, 0) - 1) / math.log2"),
                                            ("g / math.log2", "(2 ** g - 1) / math.log2")], "not 2^rel − 1"),
    ("a07_evaluation", "ties ascending", [("key=lambda d: (scores[d], d), reverse=True", "key=lambda d: (-scores[d], d)")],
     "yours orders them ascending"),
    ("a07_evaluation", "ties in dict order", [("key=lambda d: (scores[d], d), reverse=True", "key=lambda d: -scores[d]")],
     "by document id DESCENDING"),
    ("a07_evaluation", "ideal from retrieved", [("(g for g in qrels.values() if g > 0)",
                                                 "(qrels.get(d, 0) for d in scores if qrels.get(d, 0) > 0)")],
     "did not retrieve"),
    ("a07_evaluation", "ideal not cut", [("reverse=True)[:10]", "reverse=True)")], "cut at 10 too"),
    ("a07_evaluation", "discount log2(r + 2)", [("math.log2(r + 1)", "math.log2(r + 2)")], "is log2(r + 1)"),
    ("a07_evaluation", "NaN without relevant", [("if idcg > 0 else 0.0", 'if idcg > 0 else float("nan")')], "not NaN"),
    ("a07_evaluation", "DCG not cut (not listed)", [("enumerate(ranking[:10], 1)", "enumerate(ranking, 1)")],
     "ndcg_at_10 with 15 documents"),
    # the integrity rule: the existing answer, however it is reached, scores zero
    ("a05_mntp", "delegates to l2v", [("import torch\n", "import torch\nfrom l2v.mntp import mntp_loss as _theirs\n")],
     "integrity: a05_mntp.py uses l2v.mntp"),
    ("a03_pooling", "l2v's pool", [("import torch\n", "import torch\nfrom l2v import pool\n")],
     "integrity: a03_pooling.py uses l2v.pool"),
    ("a07_evaluation", "scipy", [("import math\n", "import math\n\n\ndef _r(a, b):\n    import scipy.stats\n"
                                  "    return scipy.stats.spearmanr(a, b).statistic\n")], "integrity: a07_evaluation.py uses scipy"),
    ("a06_simcse", "worked solution", [("import torch\n", "import importlib\nimport torch\n\n\ndef _s():\n"
                                        "    return importlib.import_module('assignment_solutions.a06_simcse')\n")],
     "integrity: a06_simcse.py uses assignment_solutions"),
    ("a04_lora", "peft", [("import torch\n", "import torch\nimport peft as _p\n")], "integrity: a04_lora.py uses peft"),
    # ... also from the homes l2v's modules moved to (tools/, formats/)
    ("a02_bidirectional", "l2v's analysis, moved", [("import torch\n", "import torch\n"
                                                     "from l2v.tools.analyze import layer_similarity as _theirs\n")],
     "integrity: a02_bidirectional.py uses l2v.tools.analyze"),
    ("a01_llama_block", "l2v's loader, moved", [("import torch\n", "import torch\nfrom l2v.formats import loading\n")],
     "integrity: a01_llama_block.py uses l2v.formats.loading"),
    ("a04_lora", "l2v's adapter files", [("import torch\n", "import torch\nfrom l2v.formats.peft import load_adapter\n")],
     "integrity: a04_lora.py uses l2v.formats.peft"),
    # The capstone's own adapters (its earlier files are the worked solutions).
    ("a11_capstone", "accuracy without the shift", [("hidden[:, :-1], labels[:, 1:]", "hidden, labels")],
     "mntp_loss (your a05_mntp, through a11_capstone.mntp_loss) in the MNTP stage: the accuracy"),
    ("a11_capstone", "causal always", [("attention_mask(padding_mask, causal)", "attention_mask(padding_mask, True)")],
     "attention_mask (your a02_bidirectional, through a11_capstone.attention_mask) in the MNTP stage"),
    ("a11_capstone", "dropout ignored", [("    if dropout:\n", "    if False:\n")],
     "lora_layer with dropout 0.5 returned a layer without dropout"),
    ("a11_capstone", "negatives ignored", [("    if negatives is not None:\n", "    if False:\n")],
     "contrastive_loss with hard negatives (ignored?)"),
    ("a11_capstone", "sliding window ignored", [("    if sliding_window is not None:\n", "    if False:\n")],
     "attention_mask with sliding_window=2 returned a mask without the window"),
    ("a11_capstone", "l2v's metric", [("    return a07_evaluation.spearman(a, b)",
                                       "    from l2v.evaluate.metrics import spearman\n    return spearman(a, b)")],
     "integrity: a11_capstone.py uses l2v.evaluate"),
    ("a11_capstone", "l2v's loss", [("    loss = a05_mntp.mntp_loss(hidden, labels, model.lm_head)",
                                     "    from l2v import mntp\n    loss = mntp.mntp_loss(model, input_ids, labels)[0]")],
     "integrity: a11_capstone.py uses l2v.mntp.mntp_loss"),
]

# A mistake in an earlier assignment's file, found by the capstone: the message names the piece and the stage.
PIECE_MUTANTS = [
    ("a02_bidirectional", [("    if causal:\n", "    if True:\n")], "attention_mask", "MNTP"),
    ("a02_bidirectional", [("mask = padding_mask.bool()[:, None, None, :].expand(B, 1, T, T)",
                            "mask = torch.ones(B, 1, T, T, dtype=torch.bool)")], "attention_mask", "SimCSE"),
    ("a03_pooling", [("    m = pool_mask[..., None].to(hidden.dtype)", "    m = torch.ones_like(pool_mask)[..., None].to(hidden.dtype)")],
     "pool", "SimCSE"),
    ("a04_lora", [("out + self.scaling * self.lora_B(", "out + self.lora_B(")], "lora_layer", "MNTP"),
    ("a04_lora", [("import torch\n", "import torch\nfrom l2v.lora import LoRALinear as _theirs\n")], "lora_layer", "MNTP"),
    ("a05_mntp", [("hidden, labels = hidden[:, :-1], labels[:, 1:]", "pass")], "mntp_loss", "MNTP"),
    ("a06_simcse", [("F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T * scale", "a @ b.T * scale")],
     "contrastive_loss", "SimCSE"),
    ("a07_evaluation", [("ranks[order[k]] = (i + j) / 2 + 1", "ranks[order[k]] = k + 1")], "metric", "scoring"),
]


@pytest.mark.parametrize("earlier, plant, piece, stage", PIECE_MUTANTS,
                         ids=[f"{m[0][:3]}-{m[2]}-{m[3]}-{i}" for i, m in enumerate(PIECE_MUTANTS)])
def test_capstone_names_the_piece_and_stage_of_a_planted_mistake(tmp_path, earlier, plant, piece, stage):
    folder = submission(tmp_path, grade.grading.BUILDS_ON["a11_capstone"] + ("a11_capstone",))
    text = (folder / f"{earlier}.py").read_text()
    for old, new in plant:
        assert old in text, f"{earlier}: the text to break is missing: {old!r}"
        text = text.replace(old, new)
    (folder / f"{earlier}.py").write_text(text)
    checks = grade.grade_assignment(folder, "a11_capstone", hidden=False)
    got, total = grade.score(checks)
    named = f"{piece} (your {earlier}, through a11_capstone.{piece}) in the {stage} stage"
    assert any(c.message and c.message.startswith(named) for c in checks), [c.message for c in checks if c.message]
    assert got < total


def test_capstone_stub_scores_under_half_and_the_worked_solution_full(tmp_path):
    stub = tmp_path / "stub"
    submission(stub, grade.grading.BUILDS_ON["a11_capstone"])  # every earlier assignment solved
    (stub / "a11_capstone.py").write_text((ASSIGNMENTS / "a11_capstone.py").read_text())
    got, total = grade.score(grade.grade_assignment(stub, "a11_capstone", hidden=False))
    assert got < total / 2, (got, total)
    solved = grade.grade_assignment(submission(tmp_path / "solved", grade.grading.BUILDS_ON["a11_capstone"] +
                                               ("a11_capstone",)), "a11_capstone")
    assert grade.score(solved)[0] == grade.score(solved)[1] > 0, [c.message for c in solved if c.message]
    missing = grade.grade_assignment(submission(tmp_path / "alone", ["a11_capstone"]), "a11_capstone")
    assert all("builds on a02_bidirectional.py, which is missing" in c.message for c in missing)


@pytest.mark.parametrize("assignment, mistake, plant, message", MUTANTS, ids=[f"{m[0][:3]}-{m[1]}" for m in MUTANTS])
def test_grader_names_planted_mistake(tmp_path, assignment, mistake, plant, message):
    text = (SOLUTIONS / f"{assignment}.py").read_text()
    for old, new in plant:
        assert old in text, f"{assignment}: the text to break is missing: {old!r}"
        text = text.replace(old, new)
    (tmp_path / f"{assignment}.py").write_text(text)
    submission(tmp_path, grade.grading.BUILDS_ON.get(assignment, ()))  # the capstone imports the earlier files
    checks = grade.grade_assignment(tmp_path, assignment)
    got, total = grade.score(checks)
    messages = [c.message for c in checks if c.message]
    assert got < total, f"{mistake}: the planted mistake scored full marks"
    assert any(message in m for m in messages), f"{mistake}: no message says {message!r}; got {messages}"


def test_mutants_cover_every_assignment():
    assert {m[0] for m in MUTANTS} == set(STUBS) and len(MUTANTS) >= 60


# ---------------------------------------------------------------- the kit


def load_grader(file: Path):
    """A grader module, imported as the kit imports it (against the reference solution)."""
    import grading

    grading.SOLUTION = True
    try:
        spec = importlib.util.spec_from_file_location(file.stem, file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        grading.SOLUTION = False


def test_points_are_given_for_every_check():
    for name in STUBS:
        for file, _ in grade.grader_files(name):
            grader = load_grader(file)
            tests = {n for n in vars(grader) if n.startswith("test_")}
            assert set(grader.POINTS) == tests, f"{file.name}: POINTS and the checks differ"
            assert all(isinstance(v, int) and v > 0 for v in grader.POINTS.values())
    points = load_grader(ASSIGNMENTS / "test_a05_mntp.py").POINTS
    assert points["test_loss_matches_transformers"] > points["test_uses_the_generator"]  # weighted by what matters


def test_grading_command_prints_a_score(tmp_path):
    folder = submission(tmp_path / "student", ["a05_mntp", "a07_evaluation"],
                        [("eligible[:, 0] = False", "pass")])  # a05 breaks one rule; a07 is right
    run = subprocess.run([sys.executable, str(ASSIGNMENTS / "grade.py"), str(folder), "--only", "a05_mntp",
                          "a07_evaluation", "a03_pooling"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = run.stdout
    assert run.returncode == 1, run.stdout + run.stderr
    got = re.search(r"^score: (\d+)/(\d+)$", out, flags=re.M)
    assert got, out
    a05 = re.search(r"^a05_mntp .* (\d+)/(\d+)$", out, flags=re.M)
    a07 = re.search(r"^a07_evaluation .* (\d+)/(\d+)$", out, flags=re.M)
    a03 = re.search(r"^a03_pooling .* (\d+)/(\d+)$", out, flags=re.M)
    assert a07.group(1) == a07.group(2) and a03.group(1) == "0" and 0 < int(a05.group(1)) < int(a05.group(2)), out
    assert int(got.group(1)) == int(a05.group(1)) + int(a07.group(1)), out
    assert "position 0 was selected" in out and "a03_pooling.py is missing" in out, out
    a05_total = sum(load_grader(ASSIGNMENTS / "test_a05_mntp.py").POINTS.values())
    assert int(a05.group(2)) >= a05_total  # the visible checks' points, plus the hidden ones


def test_class_of_submissions_writes_a_csv(tmp_path):
    root = tmp_path / "class"
    names = ["a03_pooling", "a07_evaluation"]
    submission(root / "ada", names)
    submission(root / "bob", names, [("(seen > n_prefix[:, None])", "(seen > 0)")])
    submission(root / "cy", names, [("import math\n", "import math\nfrom l2v.evaluate import metrics\n")])
    (root / "dee").mkdir()  # handed in nothing
    rows = grade.grade_class(root, tmp_path / "scores.csv", assignments=names)
    table = {r["student"]: r for r in csv.DictReader(open(tmp_path / "scores.csv"))}
    assert list(table) == ["ada", "bob", "cy", "dee"] and len(rows) == 4
    full = int(table["ada"]["out_of"])
    assert int(table["ada"]["total"]) == full and table["ada"]["failed_checks"] == ""
    assert 0 < int(table["bob"]["total"]) < full and "a03_pooling:test_text_mask" in table["bob"]["failed_checks"]
    assert table["cy"]["a07_evaluation"] == "0" and table["cy"]["integrity"] == "a07_evaluation"
    assert int(table["cy"]["a03_pooling"]) == int(table["ada"]["a03_pooling"])
    assert table["dee"]["total"] == "0"
    with pytest.raises(SystemExit):  # an existing CSV is not overwritten without --force
        grade.main([str(root), "--csv", str(tmp_path / "scores.csv"), "--only", *names])


def test_written_parts_join_the_class_csv(tmp_path):
    """a08 and a11's report, graded by hand from their rubrics, in the same CSV and totals."""
    root = tmp_path / "class"
    for name in ("ada", "bob"):
        submission(root / name, ["a03_pooling"])
    written = tmp_path / "written.csv"
    written.write_text("student,a08_reading_the_loop,a11_report\nada,17,26.5\nbob,12,\n")
    rows = grade.grade_class(root, tmp_path / "scores.csv", assignments=["a03_pooling"], written=written)
    table = {r["student"]: r for r in rows}
    a03 = table["ada"]["a03_pooling"]
    assert table["ada"]["total"] == a03 + 17 + 26.5 and table["ada"]["out_of"] == a03 + 40  # 26.5: the open tier's points
    assert table["bob"]["total"] == a03 + 12 and table["bob"]["not_graded_yet"] == "a11_report"
    for bad, says in [("student,a08_reading_the_loop\nada,21\n", "outside 0–20"),
                      ("student,a08_reading_the_loop\nada,seventeen\n", "not a number"),
                      ("student,a8\nada,1\n", "unknown: a8"), ("student,a08_reading_the_loop\neve,3\n", "no submission folder for eve")]:
        written.write_text(bad)
        with pytest.raises(SystemExit, match=says):
            grade.grade_class(root, tmp_path / "again.csv", assignments=["a03_pooling"], written=written)


def test_similarity_finds_a_renamed_copy_and_not_independent_work(tmp_path):
    similarity = load_grader(ASSIGNMENTS / "similarity.py")
    root = tmp_path / "class"
    submission(root / "ada", ["a05_mntp", "a07_evaluation"])
    copy = (root / "ada" / "a05_mntp.py").read_text()
    for old, new in [("eligible", "ok"), ("selected", "chosen"), ("labels", "targets"), ("# state i", "# my note: i")]:
        copy = copy.replace(old, new)
    (root / "bob").mkdir()
    (root / "bob" / "a05_mntp.py").write_text('"""Mine."""\n' + copy)  # renamed, reworded, a docstring added
    (root / "cy").mkdir()
    (root / "cy" / "a05_mntp.py").write_text((ASSIGNMENTS / "reference.py").read_text())  # other code entirely
    pairs = similarity.compare(root, threshold=0.9)
    assert [(name, x, y) for _, name, x, y in pairs] == [("a05_mntp", "ada", "bob")] and pairs[0][0] > 0.99
    assert similarity.compare(root, ["a05_mntp"], threshold=0.0)[-1][0] < 0.5  # the unrelated file: far apart
    with pytest.raises(SystemExit):
        similarity.main([str(tmp_path / "nowhere")])


NUMBERS = {1: "one", 2: "two", 7: "seven", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve", 13: "thirteen"}


def test_the_counts_in_the_prose_are_the_codes():
    """Counts the READMEs state — points, hidden points, planted mistakes, assignments, notebooks — are
    read back from the code, so a change to one without the other fails here."""
    kit = (ASSIGNMENTS / "README.md").read_text()
    planned = [c for a in STUBS for c in grade.planned_checks(a)]
    total, hidden = sum(c.points for c in planned), sum(c.points for c in planned if c.hidden)
    capstone = sum(c.points for c in planned if c.assignment == "a11_capstone")
    assert f"({hidden} of the {total} points)" in kit and f"the total is {total}, of which {hidden} hidden" in kit
    assert f"{capstone} the capstone's automatic" in kit and f"not the course's {total})" in kit
    a03 = sum(c.points for c in planned if c.assignment == "a03_pooling")
    assert f"out of a03's {a03}," in kit
    graded = len(STUBS)
    assert f"{len(MUTANTS)} planted mistakes across all {NUMBERS[graded]} graded assignments" in kit
    assert f"{len(PIECE_MUTANTS)} mistakes\n  planted" in kit or f"{len(PIECE_MUTANTS)} mistakes planted" in kit
    assert f"the {len(MUTANTS) + len(PIECE_MUTANTS)} of them took" in kit
    notebooks = NUMBERS[len(list((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb")))]
    assert f"{notebooks} notebooks" in (ROOT / "README.md").read_text()
    assert f"all {notebooks}" in (ROOT / "tutorials" / "README.md").read_text()
    rows = re.findall(r"^\| `(a\d\d)_", kit, flags=re.M)  # the table of assignments
    assert sorted(set(rows)) == sorted({s[:3] for s in STUBS} | {"a08"}), rows


def test_hidden_checks_draw_their_inputs_from_the_instructors_seed(tmp_path, monkeypatch):
    """Another seed, other inputs — and the worked solutions still pass every hidden check, so the
    checks compute their answers rather than store them."""
    import grading

    seen = []
    for seed in ("0", "1", "987654"):
        monkeypatch.setenv("L2V_GRADER_SEED", seed)
        seen.append(torch.randn(4, generator=grading.draw(5)))
        checks = [c for c in grade.grade(submission(tmp_path / seed), ["a01_llama_block", "a03_pooling", "a05_mntp",
                                                                      "a06_simcse", "a07_evaluation"]) if c.hidden]
        assert checks and not [c.message for c in checks if c.message], (seed, [c.message for c in checks if c.message])
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    monkeypatch.setenv("L2V_GRADER_SEED", "-3")
    with pytest.raises(SystemExit, match="non-negative whole number"):
        grading.grader_seed()


def test_hidden_checks_run_only_when_the_instructor_grades(tmp_path):
    # special ids fixed at the visible grader's {0, 1, 2}: only the hidden check, with other ids, sees it
    folder = submission(tmp_path / "student", ["a05_mntp"], [("torch.tensor(sorted(special_ids))", "torch.tensor([0, 1, 2])")])
    instructor = grade.grade_assignment(folder, "a05_mntp")
    student = grade.grade_assignment(folder, "a05_mntp", hidden=False)
    assert not any(c.hidden for c in student) and any(c.hidden for c in instructor)
    assert not any(c.message for c in student)  # the visible grader uses prob = 0.2: it cannot see this
    assert any(c.hidden and "use the special_ids argument" in (c.message or "") for c in instructor)
    assert not any(p.name.startswith("test_") for p in (ASSIGNMENTS / "hidden").iterdir())  # pytest never collects them


def test_hand_out_has_no_answers(tmp_path):
    out = handout.build(tmp_path / "handout")
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for name in STUBS:
        assert f"tutorials/assignments/{name}.py" in files and f"tutorials/assignments/test_{name}.py" in files
        assert (out / "tutorials" / "assignments" / f"{name}.py").read_text() == (ASSIGNMENTS / f"{name}.py").read_text()
    assert {"tutorials/assignments/grading.py", "tutorials/assignments/conftest.py", "tutorials/assignments/README.md",
            "tutorials/common.py", "tutorials/render.py", "tutorials/smollm2_values.json",  # TINY mode's recorded values
            "pyproject.toml", "README.md", "l2v/encoder.py"} <= files  # the repository's layout: its README's commands run
    notebooks = len(list((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb")))
    assert len([f for f in files if f.startswith("tutorials/") and f.count("/") == 1 and f.endswith(".ipynb")]) == notebooks
    assert len([f for f in files if f.startswith("tutorials/rendered/")]) == notebooks  # the copies as they ran
    assert not any("reference" in f or "hidden" in f or "solution" in f for f in files), files
    assert "For instructors" not in (out / "tutorials" / "assignments" / "README.md").read_text()
    with pytest.raises(SystemExit):  # never overwrites
        handout.build(out)
    assert not (out / "tutorials" / "assignments" / "reference.py").exists()


def cited_paths(root: Path) -> list[tuple[str, str]]:
    """(file, what it cites) for every relative link in the Markdown of `root`'s .md files and notebooks,
    and every repository path (docs/…, scripts/…, tests/…, tutorials/…) named in them or in its .py files."""
    missing = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".md", ".ipynb", ".py"):
            continue
        text = path.read_text(errors="replace")
        markdown = text if path.suffix == ".md" else ""
        if path.suffix == ".ipynb":
            cells = json.loads(text)["cells"]
            text = "\n".join("".join(c["source"]) for c in cells)
            markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        links = [m.group(1) for m in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", markdown)
                 if not m.group(1).startswith(("http:", "https:", "mailto:"))]
        missing += [(path, link) for link in links if not (path.parent / link).exists()]
        named = re.findall(r"(?<![\w/.])((?:docs|scripts|tests|tutorials)/[\w./-]+\.(?:md|py|ipynb|jsonl|json|png|txt))(?!\w)",
                           text)
        missing += [(path, name) for name in named if not (root / name).exists()]
    return sorted({(str(p.relative_to(root)), link) for p, link in missing})


def test_hand_out_is_self_contained(tmp_path):
    """Every link and repository path the hand-out's files cite resolves inside it (docs/, scripts/, the
    library's tests, the rendered notebooks ship), and nothing of the instructor's is in it."""
    out = handout.build(tmp_path / "handout")
    assert cited_paths(out) == []
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"docs/results.md", "scripts/bench.py", "tests/test_model.py", "tutorials/rendered/12_capstone.ipynb"} <= files
    instructors = ("hidden/", "reference.py", "assignment_solutions", "test_assignments.py", "rubric", "autograder.py",
                   "similarity.py")
    assert not [f for f in files if any(k in f for k in instructors)]


def test_instructors_kit_holds_what_the_hand_out_leaves_out(tmp_path):
    kit = handout.build_kit(tmp_path / "kit")
    files = {p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()}
    assert {"hidden/rubric_a08.md", "hidden/rubric_a11.md", "hidden/hidden_a05_mntp.py", "reference.py",
            "autograder.py", "similarity.py", "test_assignments.py", "solutions/a11_capstone.py",
            "solutions/notebook_answers/12.md", "README.md"} <= files
    out = handout.build(tmp_path / "handout")
    students = {p.name for p in out.rglob("*") if p.is_file()}
    assert not students & {"reference.py", "autograder.py", "similarity.py", "test_assignments.py", "rubric_a11.md"}
    with pytest.raises(SystemExit):  # never overwrites
        handout.build_kit(kit)


def test_integrity_zeroes_only_the_assignment_that_uses_the_answer(tmp_path):
    folder = submission(tmp_path / "student", ["a03_pooling", "a05_mntp"])
    wrapper = "import torch\nimport l2v.mntp\n\n\ndef mntp_loss(hidden, labels, lm_head):\n    return l2v.mntp.mntp_loss\n"
    (folder / "a05_mntp.py").write_text((folder / "a05_mntp.py").read_text().replace("import torch\n", wrapper, 1))
    checks = grade.grade(folder, ["a03_pooling", "a05_mntp"])
    a03 = [c for c in checks if c.assignment == "a03_pooling"]
    a05 = [c for c in checks if c.assignment == "a05_mntp"]
    assert all(c.message is None for c in a03)
    assert all(c.earned == 0 and c.message.startswith("integrity: a05_mntp.py uses l2v.mntp") for c in a05)


def test_grader_ndcg_is_trec_eval():
    """The a07 grader's own nDCG@10 equals trec_eval's (pytrec_eval), ties and unretrieved documents included."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    import random

    grader = load_grader(ASSIGNMENTS / "test_a07_evaluation.py")
    rng = random.Random(0)
    runs, qrels = {}, {}
    for q in range(60):
        n = rng.randint(1, 25)
        runs[f"q{q}"] = {f"d{rng.randint(0, 40)}": float(rng.randint(0, 6)) for _ in range(n)}  # many ties
        qrels[f"q{q}"] = {f"d{rng.randint(0, 40)}": rng.randint(0, 3) for _ in range(rng.randint(1, 15))}
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(runs)
    for q in runs:
        ours = float(grader.reference_ndcg(runs[q], qrels[q]))
        assert math.isclose(ours, theirs[q]["ndcg_cut_10"], abs_tol=1e-4), (q, ours, theirs[q]["ndcg_cut_10"])


@pytest.mark.skipif(os.environ.get("L2V_TIME_CLASS") != "1", reason="set L2V_TIME_CLASS=1 to time a class of 30")
def test_time_to_grade_a_class_of_30(tmp_path):
    """30 submissions: worked solutions, some with a planted mistake, some incomplete, and three hostile
    ones (a library patched at import, an endless loop at import, a syntax error). Every other one gets
    the grade it gets when graded alone."""
    root = tmp_path / "class"
    for i in range(30):
        m = MUTANTS[(7 * i) % len(MUTANTS)]
        submission(root / f"student{i:02d}", STUBS if i % 5 else STUBS[:4], m[2] if i % 3 else ())
    hostile = {"student01": "import torch\ntorch.allclose = lambda *a, **k: True\n", "student02": "while True:\n    pass\n",
               "student04": "def pool(:\n"}
    for name, code in hostile.items():
        path = root / name / "a03_pooling.py"
        path.write_text(code + path.read_text())
    start = time.perf_counter()
    rows = grade.grade_class(root, tmp_path / "scores.csv", timeout=30)
    seconds = time.perf_counter() - start
    print(f"\n30 submissions graded in {seconds:.1f} s ({seconds / 30:.2f} s each)")
    table = {r["student"]: r for r in rows}
    assert len(rows) == 30 and len(list((tmp_path / "scores-feedback").glob("*.results.json"))) == 30
    assert table["student01"]["integrity"] == "a03_pooling a11_capstone"  # the capstone imports the patched a03
    assert all(table[n]["a03_pooling"] == 0 for n in hostile)
    for name in ("student00", "student03", "student05", "student29"):  # as graded alone, in this process
        alone = grade.grade(root / name, timeout=30)
        assert table[name]["total"] == grade.score(alone)[0], name


# ---------------------------------------------------------------- a class graded safely (issue 27)


def test_class_grading_is_isolated(tmp_path):
    """One submission per subprocess: a library patched at import, an endless loop at import and a
    syntax error each cost their own assignment only, and never another student's grade."""
    root = tmp_path / "class"
    names = ["a03_pooling", "a07_evaluation"]
    patch = "import torch\ntorch.allclose = lambda *a, **k: True  # every comparison passes\n"
    submission(root / "a-mallory", names)
    (root / "a-mallory" / "a03_pooling.py").write_text(patch + (root / "a-mallory" / "a03_pooling.py").read_text())
    wrong = [("(seen > n_prefix[:, None])", "(seen > 0)")]  # a03 mistake the patch would hide
    submission(root / "b-mallory-wrong", names, wrong)
    (root / "b-mallory-wrong" / "a03_pooling.py").write_text(patch + (root / "b-mallory-wrong" / "a03_pooling.py").read_text())
    submission(root / "c-bob", names, wrong)  # graded after both: the patch must not reach him
    submission(root / "d-loop", names)
    (root / "d-loop" / "a03_pooling.py").write_text("while True:\n    pass\n")
    submission(root / "e-syntax", names)
    (root / "e-syntax" / "a03_pooling.py").write_text("def pool(:\n")
    submission(root / "f-ada", names)
    start = time.perf_counter()
    grade.grade_class(root, tmp_path / "scores.csv", assignments=names, timeout=20, jobs=2)
    print(f"\n6 submissions graded in isolation in {time.perf_counter() - start:.1f} s")
    table = {r["student"]: r for r in csv.DictReader(open(tmp_path / "scores.csv"))}
    full_a03, full_a07 = int(table["f-ada"]["a03_pooling"]), int(table["f-ada"]["a07_evaluation"])
    assert full_a03 > 0 and table["f-ada"]["failed_checks"] == ""
    for student in ("a-mallory", "b-mallory-wrong"):
        assert table[student]["a03_pooling"] == "0" and table[student]["integrity"] == "a03_pooling"
        assert int(table[student]["a07_evaluation"]) == full_a07  # the other assignment is graded as usual
    assert 0 < int(table["c-bob"]["a03_pooling"]) < full_a03  # his mistake is still seen
    for student in ("d-loop", "e-syntax"):
        assert table[student]["a03_pooling"] == "0" and int(table[student]["a07_evaluation"]) == full_a07
    # the messages, per check
    checks = grade.grade_isolated(root / "a-mallory", ["a03_pooling"], timeout=20)
    assert all("replaces torch.allclose" in c.message for c in checks), checks[0].message
    checks = grade.grade_isolated(root / "d-loop", ["a03_pooling"], timeout=5)
    assert all("could not be imported" in c.message and "still running after 5 s" in c.message for c in checks)


def test_a_submission_stopped_in_all_scores_zero_with_the_reason(tmp_path):
    folder = submission(tmp_path / "slow", ["a03_pooling"])
    (folder / "a03_pooling.py").write_text("import time\ntime.sleep(60)\n")  # a sleep the import alarm stops ...
    checks = grade.grade_isolated(folder, ["a03_pooling"], timeout=2, submission_timeout=1)  # ... too late here
    assert checks and all(c.earned == 0 and "stopped after 1 s in all" in c.message for c in checks)
    assert sum(c.points for c in checks) == sum(c.points for c in grade.planned_checks("a03_pooling"))


def test_a_grader_that_cannot_import_fails_its_assignment_only(tmp_path, monkeypatch):
    broken = tmp_path / "test_a03_pooling.py"
    broken.write_text("import a_package_nobody_installed\n")
    real = grade.grader_files
    monkeypatch.setattr(grade, "grader_files", lambda a, hidden=True: [(broken, False)] if a == "a03_pooling" else real(a, hidden))
    folder = submission(tmp_path / "ada", ["a03_pooling", "a07_evaluation"])
    checks = grade.grade(folder, ["a03_pooling", "a07_evaluation"])
    a03 = [c for c in checks if c.assignment == "a03_pooling"]
    assert len(a03) == 1 and "could not be imported" in a03[0].message and "a_package_nobody_installed" in a03[0].message
    assert all(c.message is None for c in checks if c.assignment == "a07_evaluation")


def test_class_run_writes_feedback_and_gradescope_results(tmp_path):
    root = tmp_path / "class"
    names = ["a03_pooling", "a05_mntp"]
    submission(root / "ada", names)
    submission(root / "bob", names, [("hidden, labels = hidden[:, :-1], labels[:, 1:]", "pass")])
    grade.grade_class(root, tmp_path / "scores.csv", assignments=names)
    feedback = tmp_path / "scores-feedback"
    bob = (feedback / "bob.txt").read_text()
    assert "that is BERT's loss" in bob and "score: " in bob  # the teaching message reaches the student
    results = json.loads((feedback / "bob.results.json").read_text())
    tests = {t["name"]: t for t in results["tests"]}
    assert results["score"] == sum(t["score"] for t in tests.values()) < results["max_score"]
    assert tests["a05_mntp: test_loss_matches_transformers"]["score"] == 0
    assert "BERT" in tests["a05_mntp: test_loss_matches_transformers"]["output"]
    assert {t["visibility"] for t in tests.values()} == {"visible", "after_published"}  # hidden ones shown later
    ada = json.loads((feedback / "ada.results.json").read_text())
    assert ada["score"] == ada["max_score"] > 0
    with pytest.raises(SystemExit):  # the feedback folder is not overwritten either
        (tmp_path / "scores.csv").unlink()
        grade.main([str(root), "--csv", str(tmp_path / "scores.csv"), "--only", *names])


def test_autograder_zip_grades_a_submission_as_gradescope_would(tmp_path):
    """The zip's run_autograder, with Gradescope's /autograder moved to a temporary folder."""
    import zipfile

    autograder = load_grader(ASSIGNMENTS / "autograder.py")
    zip_path = autograder.build(tmp_path / "autograder.zip")
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as z:
        names = z.namelist()
        z.extractall(root)
    assert "setup.sh" in names and "run_autograder" in names and "source/l2v/encoder.py" in names
    assert any(n.startswith("source/tutorials/assignments/hidden/") for n in names)  # the instructor's checks
    assert not any("assignment_solutions" in n for n in names)
    submission(root / "submission", ["a03_pooling", "a07_evaluation"])
    run = subprocess.run(["bash", str(root / "run_autograder")], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "AUTOGRADER_ROOT": str(root)})
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text())
    tests = {t["name"]: t for t in results["tests"]}
    assert all(t["score"] == t["max_score"] for n, t in tests.items() if n.startswith(("a03", "a07")))
    assert all(t["score"] == 0 and "missing" in t["output"] for n, t in tests.items() if n.startswith("a01"))
    with pytest.raises(SystemExit):
        autograder.build(zip_path)


def test_a_weekly_zip_grades_one_assignment_out_of_its_points(tmp_path):
    """`autograder.py --only a03`: a week's upload is graded out of a03's points, not the course's."""
    import zipfile

    autograder = load_grader(ASSIGNMENTS / "autograder.py")
    root = tmp_path / "autograder"
    with zipfile.ZipFile(autograder.build(tmp_path / "a03.zip", only="a03")) as z:
        z.extractall(root)
    submission(root / "submission", ["a03_pooling"])  # this week's file only
    run = subprocess.run(["bash", str(root / "run_autograder")], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "AUTOGRADER_ROOT": str(root)})
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text())
    points = sum(c.points for c in grade.planned_checks("a03_pooling"))
    assert results["score"] == results["max_score"] == points == 19, results["output"]
    assert {t["name"].split(":")[0] for t in results["tests"]} == {"a03_pooling"}
    with pytest.raises(SystemExit, match="no graded assignment"):
        autograder.build(tmp_path / "a08.zip", only="a08")


def test_solutions_release(tmp_path):
    out = handout.build(tmp_path / "release", with_solutions=True)
    assert sorted(p.stem for p in (out / "solutions").glob("*.py")) == STUBS
    notebooks = sorted(p.name[:2] for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.stem for p in (out / "solutions" / "notebook_answers").glob("*.md")) == notebooks
    assert not (out / "tutorials" / "assignments" / "autograder.py").exists()
