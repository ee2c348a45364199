"""A tiny MTEB-like evaluator: task folders, MTEB's protocols and metrics, the built-in suites.

    from l2v import Encoder
    from l2v.evaluate import evaluate, format_table
    from l2v.sources.suites import build_suite
    results = evaluate(Encoder.from_pretrained("weights/smollm2-135m-instruct"), build_suite("l2v-mini"))
    print(format_table(results))

tasks.py: task folders and how each type is scored (metrics.py, estimators.py: MTEB's metrics and
models, re-implemented). The built-in suites and their data: sources/.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from ..runtime.checks import NonFiniteError
from ..tokenizer import DEFAULT_MAX_LENGTH, INSTRUCTION_RULE
from .tasks import MAIN_SCORES, Task, TaskError

__all__ = ["MAIN_SCORES", "Task", "TaskError", "evaluate", "evaluate_model",
           "evaluate_model_poolings", "evaluate_poolings", "format_table", "type_averages", "comparison_table",
           "SHORT_NAMES", "compare"]


def evaluate(encoder, tasks: Sequence, batch_size: int = 32, show_progress: bool = True) -> list[dict]:
    """Score an Encoder on tasks (Task objects or folders). Within a task every distinct
    (text, role) is encoded once (Lee's 50 documents make 1,225 pairs); then the task is scored.
    Nothing is shared across tasks: their instructions differ, and so do the embeddings."""
    def encode(texts, instruction):
        return {"": encoder.encode(texts, instruction=instruction, batch_size=batch_size, show_progress_bar=False)}

    return _score(tasks, encode, [""], encoder.dim, show_progress)[""]


def evaluate_poolings(encoder, tasks: Sequence, poolings: Sequence[str], batch_size: int = 32,
                      show_progress: bool = True) -> dict[str, list[dict]]:
    """`evaluate` for several poolings of one causal encoder at once → {pooling: results}: each
    text goes through the model once for all of them (`Encoder.encode_poolings`)."""
    def encode(texts, instruction):
        return encoder.encode_poolings(texts, poolings, instruction=instruction, batch_size=batch_size,
                                       show_progress_bar=False)

    return _score(tasks, encode, list(dict.fromkeys(poolings)), encoder.dim, show_progress)


def _score(tasks, encode, names: list[str], dim: int, show_progress: bool) -> dict[str, list[dict]]:
    """The evaluation loop: `encode(texts, instruction)` → {name: (N, D)}; every task is scored
    once per name, from the same encoding pass."""
    tasks = [t if isinstance(t, Task) else Task.load(t) for t in tasks]
    results = {name: [] for name in names}
    for task in tqdm(tasks, desc="tasks", unit="task", disable=not show_progress):
        start = time.perf_counter()
        wanted = list(dict.fromkeys(task.texts()))  # distinct, in order
        instruction = task.instruction or None
        caches = {name: {} for name in names}
        for role in ("query", "document"):
            texts = [t for t, r in wanted if r == role]
            if texts:  # instructions go on queries (and on both sides of symmetric tasks), never on documents
                encoded = encode(texts, instruction if role == "query" else None)
                for name in names:
                    if not np.isfinite(encoded[name]).all():  # every score would be nan, or quietly meaningless
                        raise NonFiniteError(f"task {task.name}: the encoder gave NaN or inf embeddings")
                    caches[name].update({(t, role): v for t, v in zip(texts, encoded[name])})
        for name in names:
            def embed(texts, role, cache=caches[name]):
                return np.stack([cache[(t, role)] for t in texts]) if texts else np.zeros((0, dim), np.float32)

            scores = task.evaluate(embed)
            if not np.isfinite(scores["main_score"]):  # e.g. a collapsed encoder: every cosine equal
                raise NonFiniteError(f"task {task.name}: {task.main_score} is {scores['main_score']} (the "
                                     f"embeddings give no usable variation)")
            results[name].append({"task": task.name, "type": task.type, "main_score_name": task.main_score,
                                  "seconds": round(time.perf_counter() - start, 2), **scores})
    return results


def format_table(results: list[dict]) -> str:
    """One row per task, then the mean main score per task type and overall (× 100, as MTEB tables)."""
    width = max([len(r["task"]) for r in results] + [len("average " + r["type"]) for r in results])
    lines = [f"{'task':{width}}  {'type':19}  {'metric':15}  {'score':>6}", "-" * (width + 48)]
    for r in results:
        lines.append(f"{r['task']:{width}}  {r['type']:19}  {r['main_score_name']:15}  {100 * r['main_score']:6.2f}")
    lines.append("-" * (width + 48))
    for kind, mean in type_averages(results).items():
        lines.append(f"{'average ' + kind:{width}}  {'':19}  {'':15}  {100 * mean:6.2f}")
    return "\n".join(lines)


def type_averages(results: list[dict]) -> dict[str, float]:
    """Mean main score per task type (in MAIN_SCORES order), then 'all': the mean of the type means."""
    by_type = {k: [r["main_score"] for r in results if r["type"] == k] for k in MAIN_SCORES}
    means = {k: float(np.mean(v)) for k, v in by_type.items() if v}
    means["all"] = float(np.mean(list(means.values())))
    return means


def compare(a: list[dict], b: list[dict], level: float = 0.95) -> dict[str, dict]:
    """How much better results `a` are than `b` (the same tasks), per task type and over types:
    {type: {"diff", "low", "high"}} × 100 — the difference of the type means and its paired
    bootstrap interval (each task's items resampled the same way for both; `tasks.bootstrap`).
    An interval that excludes 0 is a difference the suite can see; one that includes it is not."""
    by_name = {r["task"]: r for r in b}
    missing = [r["task"] for r in a if r["task"] not in by_name]
    if missing:
        raise ValueError(f"compare: task(s) {', '.join(missing)} are not in both results")

    def type_means(results, key):  # {type: value or array over resamples}
        out = {k: np.mean([np.asarray(r[key], np.float64) for r in results if r["type"] == k], axis=0)
               for k in MAIN_SCORES if any(r["type"] == k for r in results)}
        out["all"] = np.mean(list(out.values()), axis=0)
        return out

    paired = [by_name[r["task"]] for r in a]
    point = {k: type_means(a, "main_score")[k] - v for k, v in type_means(paired, "main_score").items()}
    boot_a, boot_b = type_means(a, "bootstrap"), type_means(paired, "bootstrap")
    tail = 100 * (1 - level) / 2
    return {k: {"diff": round(100 * float(point[k]), 2),
                "low": round(100 * float(np.nanpercentile(boot_a[k] - boot_b[k], tail)), 2),
                "high": round(100 * float(np.nanpercentile(boot_a[k] - boot_b[k], 100 - tail)), 2)}
            for k in point}


def evaluate_model(model_dir, *, adapters=(), causal: bool = False, pooling: str = "mean", tasks=None,
                   suite: str = "l2v-mini", max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = 32, dtype=None,
                   device=None, autocast: bool = False, echo: bool = False, show_progress: bool = True) -> dict:
    """Load an encoder, score it on task folders (`tasks`), else on a built-in suite (`suite`: a name
    in sources.suites.SUITES) → a JSON-ready record with the settings, the versions, the time taken, per-task scores
    and per-type averages. echo: echo embeddings (Encoder.echo_inputs)."""
    return _evaluate_records(model_dir, [pooling], adapters=adapters, causal=causal, tasks=tasks, suite=suite,
                             max_length=max_length, batch_size=batch_size, dtype=dtype, device=device,
                             autocast=autocast, echo=echo, show_progress=show_progress)[pooling]


def evaluate_model_poolings(model_dir, poolings: Sequence[str], **kwargs) -> dict[str, dict]:
    """`evaluate_model` for several poolings of one causal model, one forward pass serving them all
    (`Encoder.encode_poolings`) → {pooling: record}. Each record says which poolings shared its pass."""
    return _evaluate_records(model_dir, list(poolings), causal=True, **kwargs)


def _evaluate_records(model_dir, poolings, *, adapters=(), causal=False, tasks=None, suite="l2v-mini",
                      max_length=DEFAULT_MAX_LENGTH, batch_size=32, dtype=None, device=None, autocast=False,
                      echo=False, show_progress=True) -> dict[str, dict]:
    import platform
    import warnings

    import torch

    from .. import __version__
    from ..encoder import Encoder
    from ..sources.suites import SUITES, build_suite

    folders = list(tasks) if tasks else build_suite(suite)
    suite = None if tasks else suite  # the record names a suite only when it was scored on one
    shared = len(poolings) > 1
    encoder = Encoder.from_pretrained(model_dir, adapters=adapters, causal=causal, pooling=poolings[0],
                                      max_length=max_length, dtype=dtype, device=device, autocast=autocast,
                                      echo=echo)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="text longer than max_length")  # truncation is the protocol here
        if shared:
            by_pooling = evaluate_poolings(encoder, folders, poolings, batch_size=batch_size,
                                           show_progress=show_progress)
        else:
            by_pooling = {poolings[0]: evaluate(encoder, folders, batch_size=batch_size, show_progress=show_progress)}
    minutes = round((time.perf_counter() - start) / 60, 2)
    records = {}
    for pooling, results in by_pooling.items():
        records[pooling] = dict(
            model=str(model_dir), adapters=[str(a) for a in adapters], causal=causal, pooling=pooling,
            appends_eos=pooling == "eos" and not encoder.tokenizer.add_eos,  # 'eos' before l2v appended an EOS was 'last'
            instructions=INSTRUCTION_RULE,  # how instruction and text were tokenised (tokenizer.py)
            echo=echo,
            max_length=max_length, dtype=str(dtype or "float32").removeprefix("torch."), autocast=autocast,
            suite=suite, suite_version=SUITES[suite].version if suite else None,  # a new version: new tasks or texts
            minutes=minutes, device=str(encoder.device), shared_pass=poolings if shared else None, averages=type_averages(results),
            tasks=results, versions=dict(l2v=__version__, torch=torch.__version__, python=platform.python_version()))
    return records


SHORT_NAMES = {"sts": "STS", "classification": "Class.", "clustering": "Clust.", "pair_classification": "Pair",
               "retrieval": "Retr.", "reranking": "Rerank", "all": "Avg"}  # table headers


def comparison_table(records: list[dict]) -> str:
    """Several evaluated configurations (records with a "row" name) × task types: the mean main
    score of each type (× 100) and the mean over types."""
    columns = [c for c in MAIN_SCORES if any(c in r["averages"] for r in records)] + ["all"]  # the suite's types
    width = max(len(r["row"]) for r in records)
    head = f"{'':{width}}  " + "  ".join(f"{SHORT_NAMES[c]:>7}" for c in columns)
    lines = [head, "-" * len(head)]
    for r in records:
        cells = [f"{100 * r['averages'][c]:7.2f}" if c in r["averages"] else f"{'–':>7}" for c in columns]
        lines.append(f"{r['row']:{width}}  " + "  ".join(cells))
    return "\n".join(lines)
