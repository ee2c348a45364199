"""A tiny MTEB-like evaluator: task folders, MTEB's protocols and metrics, the `l2v-mini` suite.

    from l2v import Encoder
    from l2v.evaluate import build_suite, evaluate, format_table
    results = evaluate(Encoder.from_pretrained("weights/smollm2-135m-instruct"), build_suite())
    print(format_table(results))
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from ..checks import NonFiniteError
from .suite import build_suite, suite_folder
from .tasks import MAIN_SCORES, Task, TaskError

__all__ = ["MAIN_SCORES", "Task", "TaskError", "build_suite", "suite_folder", "evaluate", "evaluate_model",
           "format_table", "type_averages", "comparison_table"]


def evaluate(encoder, tasks: Sequence, batch_size: int = 32, show_progress: bool = True) -> list[dict]:
    """Score an Encoder on tasks (Task objects or folders). Within a task every distinct
    (text, role) is encoded once (Lee's 50 documents make 1,225 pairs); then the task is scored.
    Nothing is shared across tasks: their instructions differ, and so do the embeddings."""
    tasks = [t if isinstance(t, Task) else Task.load(t) for t in tasks]
    results = []
    for task in tqdm(tasks, desc="tasks", unit="task", disable=not show_progress):
        start = time.perf_counter()
        wanted = list(dict.fromkeys(task.texts()))  # distinct, in order
        instruction = task.instruction or None
        cache = {}
        for role in ("query", "document"):
            texts = [t for t, r in wanted if r == role]
            if texts:  # instructions go on queries (and on both sides of symmetric tasks), never on documents
                vectors = encoder.encode(texts, instruction=instruction if role == "query" else None,
                                         batch_size=batch_size, show_progress_bar=False)
                if not np.isfinite(vectors).all():  # every score would be nan, or quietly meaningless
                    raise NonFiniteError(f"task {task.name}: the encoder gave NaN or inf embeddings")
                cache.update({(t, role): v for t, v in zip(texts, vectors)})

        def embed(texts, role, cache=cache):
            return np.stack([cache[(t, role)] for t in texts]) if texts else np.zeros((0, encoder.dim), np.float32)

        scores = task.evaluate(embed)
        if not np.isfinite(scores["main_score"]):  # e.g. a collapsed encoder: every cosine equal
            raise NonFiniteError(f"task {task.name}: {task.main_score} is {scores['main_score']} (the embeddings "
                                 f"give no usable variation)")
        results.append({"task": task.name, "type": task.type, "main_score_name": task.main_score,
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


def evaluate_model(model_dir, *, adapters=(), causal: bool = False, pooling: str = "mean", tasks=None,
                   quick: bool = False, max_length: int = 128, batch_size: int = 32, dtype=None, device=None,
                   autocast: bool = False, show_progress: bool = True) -> dict:
    """Load an encoder, score it on task folders (default: the l2v-mini suite) → a JSON-ready record
    with the settings, the versions, the time taken, per-task scores and per-type averages."""
    import platform
    import warnings

    import torch

    from .. import __version__
    from ..encoder import Encoder

    folders = list(tasks) if tasks else build_suite(quick=quick)
    encoder = Encoder.from_pretrained(model_dir, adapters=adapters, causal=causal, pooling=pooling,
                                      max_length=max_length, dtype=dtype, device=device, autocast=autocast)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="text longer than max_length")  # truncation is the protocol here
        results = evaluate(encoder, folders, batch_size=batch_size, show_progress=show_progress)
    return dict(model=str(model_dir), adapters=[str(a) for a in adapters], causal=causal, pooling=pooling,
                appends_eos=encoder.appends_eos,  # pooling 'eos' before l2v appended an EOS was 'last'
                max_length=max_length, dtype=str(dtype or "float32").removeprefix("torch."), bf16_autocast=autocast,
                suite=None if tasks else ("l2v-mini-quick" if quick else "l2v-mini"),
                minutes=round((time.perf_counter() - start) / 60, 2), averages=type_averages(results), tasks=results,
                versions=dict(l2v=__version__, torch=torch.__version__, python=platform.python_version()))


def comparison_table(records: list[dict]) -> str:
    """Several evaluated configurations (records with a "row" name) × task types: the mean main
    score of each type (× 100) and the mean over types."""
    short = {"sts": "STS", "classification": "Class.", "clustering": "Clust.", "pair_classification": "Pair",
             "retrieval": "Retr.", "reranking": "Rerank", "all": "Avg"}
    columns = list(MAIN_SCORES) + ["all"]
    width = max(len(r["row"]) for r in records)
    head = f"{'':{width}}  " + "  ".join(f"{short[c]:>7}" for c in columns)
    lines = [head, "-" * len(head)]
    for r in records:
        cells = [f"{100 * r['averages'][c]:7.2f}" if c in r["averages"] else f"{'–':>7}" for c in columns]
        lines.append(f"{r['row']:{width}}  " + "  ".join(cells))
    return "\n".join(lines)
