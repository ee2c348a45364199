"""The capstone's run (assignment 11): your pieces train an embedder, which is exported and scored.

    python tutorials/assignments/capstone.py runs/capstone              # your a11_capstone.py, on SmolLM2
    python tutorials/assignments/capstone.py runs/capstone --from DIR   # the a11_capstone.py in DIR

What it does, in the paper's order — each stage is l2v's own run (`run_mntp`, `run_simcse`),
handed your pieces through `l2v.train.Pieces`, the documented way to give a run its functions:

    MNTP     your attention mask, your LoRA layer (around every projection l2v trains), your MNTP loss
    SimCSE   the same mask and LoRA layer, your pooling, your InfoNCE     (on base + your MNTP, merged)
    export   base + MNTP + SimCSE merged into one folder (`l2v export`'s format)
    score    the exported folder and the LLM's causal mean pooling on l2v-mini-quick, each difference
             with its paired 95 % bootstrap interval; the STS tasks scored again with your metric

OUT keeps every stage: a finished one is reused, a stopped one resumed. OUT/results.md is the table,
the intervals and the minutes — paste it into your report (a11_report.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = {  # the pieces each stage calls (a stage refuses a piece it does not call: train.Pieces.check)
    "MNTP": ("attention_mask", "lora_layer", "mntp_loss"),
    "SimCSE": ("attention_mask", "lora_layer", "pool", "contrastive_loss"),
}


@dataclass(frozen=True)
class Budget:
    """The capstone's training budget: the demo's `cpu` presets, with LoRA dropout 0 (your a04 layer
    has none; SimCSE's two views still differ by attention dropout) and fp32 (no autocast), so a CPU
    with native bf16 and one without train the same numbers."""
    mntp: dict = field(default_factory=lambda: dict(preset="cpu", lora_dropout=0.0, autocast=False))
    simcse: dict = field(default_factory=lambda: dict(preset="cpu", lora_dropout=0.0, autocast=False))
    suite: str = "l2v-mini-quick"


NAMES = ("attention_mask", "lora_layer", "pool", "mntp_loss", "contrastive_loss", "metric")


def pieces(module, stage: str):
    """The l2v Pieces of one stage, built from your a11 module's functions (None: l2v's own)."""
    from l2v.train import Pieces

    return Pieces(**{name: getattr(module, name) for name in STAGES[stage]})


def l2v_own():
    """Stands in for an a11 not written yet: every piece l2v's own (Pieces' None), l2v's Spearman."""
    from types import SimpleNamespace

    from l2v.evaluate.metrics import spearman

    return SimpleNamespace(**dict.fromkeys(NAMES[:-1]), metric=spearman)


def unwritten(module) -> list[str]:
    """The functions of an a11 module still raising their TODO."""
    import inspect

    return [name for name in NAMES if "raise NotImplementedError" in inspect.getsource(getattr(module, name))]


def load_capstone(folder: Path | None = None):
    """Your a11_capstone module; its `import aNN_…` lines read the files beside it."""
    folder = Path(folder or HERE).resolve()
    path = folder / "a11_capstone.py"
    if not path.is_file():
        raise SystemExit(f"no a11_capstone.py in {folder}")
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("a11_capstone", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rescore_sts(encoder, folders, record: dict, metric) -> list[dict]:
    """Each STS task among `folders` scored again with `metric` (your Spearman) on the encoder's
    cosines, beside the evaluator's own number in `record` — the two must agree."""
    import numpy as np

    from l2v.evaluate.tasks import Task

    scored = {t["task"]: t["main_score"] for t in record["tasks"]}
    out = []
    for folder in folders:
        task = Task.load(folder)
        if task.type != "sts":
            continue
        texts = sorted({r[k] for r in task.rows for k in ("sentence1", "sentence2")})  # each once (Lee: 50 for 1,225 pairs)
        vectors = encoder.encode(texts, instruction=task.instruction or None, show_progress_bar=False, normalize=True)
        row = {t: i for i, t in enumerate(texts)}
        e1, e2 = (vectors[[row[r[k]] for r in task.rows]] for k in ("sentence1", "sentence2"))
        gold = [r["score"] for r in task.rows]
        yours = float(metric(gold, np.sum(e1 * e2, axis=1).tolist()))
        out.append({"task": task.name, "yours": yours, "evaluator": scored[task.name]})
    return out


def run(module, out, model_dir=None, budget: Budget = Budget(), data="wiki", tasks=None) -> dict:
    """Train MNTP → SimCSE with `module`'s pieces, export, score → a summary (also OUT/results.json, .md).
    tasks: task folders to score on instead of budget.suite (the notebook's TINY mode)."""
    import l2v
    from l2v.evaluate import comparison_table
    from l2v.formats.export import export_model
    from l2v.mntp import run_mntp
    from l2v.runtime.checkpoints import LOG_FILE, read_log
    from l2v.settings import resolve
    from l2v.simcse import run_simcse
    from l2v.sources.fetch import fetch_smollm2, fetch_wiki
    from l2v.sources.suites import build_suite
    from l2v.tools.experiment import Row, Timer, compare_rows, evaluate_rows, in_words, train_once

    out, timer, started = Path(out), Timer(), time.perf_counter()
    model_dir = Path(model_dir) if model_dir else timer("fetch model", fetch_smollm2)
    if data == "wiki":
        timer("fetch text", fetch_wiki)
    mntp_settings, simcse_settings = resolve("mntp", **budget.mntp), resolve("simcse", **budget.simcse)
    mntp = timer("train MNTP", train_once, out / "mntp", run_mntp, model_dir, data, settings=mntp_settings,
                 pieces=pieces(module, "MNTP"))
    simcse = timer("train SimCSE", train_once, out / "simcse", run_simcse, model_dir, mntp, data,
                   settings=simcse_settings, pieces=pieces(module, "SimCSE"))
    exported = timer("export", export_model, model_dir, out / "export", adapters=[mntp, simcse], overwrite=True)

    where = dict(suite=budget.suite) if tasks is None else dict(suite="tasks", tasks=list(tasks))
    base = evaluate_rows(model_dir, [Row("Uni + mean", True, "mean", (), out / "eval" / "uni-mean.json")],
                         timer=timer, show_progress=False, **where)
    yours = evaluate_rows(exported, [Row("yours (exported)", False, "mean", (), out / "eval" / "yours.json")],
                          timer=timer, show_progress=False, **where)
    records = {**base, **yours}
    claims = compare_rows(records, [("yours (exported)", "Uni + mean")])
    encoder = l2v.Encoder.from_pretrained(exported)
    folders = build_suite(budget.suite) if tasks is None else tasks
    sts = timer("STS with your metric", rescore_sts, encoder, folders, records["yours (exported)"], module.metric)

    logs = {stage: read_log(out / stage / LOG_FILE, keep_through=mntp_settings.steps + simcse_settings.steps)
            for stage in ("mntp", "simcse")}
    summary = {"model": str(model_dir), "suite": where["suite"], "budget": {"mntp": budget.mntp, "simcse": budget.simcse},
               "table": comparison_table([{"row": name, **r} for name, r in records.items()]),
               "claims": claims, "sts_with_your_metric": sts, "minutes": timer.minutes,
               "total_minutes": round((time.perf_counter() - started) / 60, 2),
               "last_log": {stage: records_[-1] for stage, records_ in logs.items() if records_}}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["# Capstone run", "", f"model {model_dir.name}, suite {where['suite']}, "
             f"{summary['total_minutes']} min in all", "", "```text", summary["table"], "```", ""]
    lines += [f"- {in_words(c)}" for c in claims]
    lines += [f"- STS, {s['task']}: your metric {s['yours']:.6f}, the evaluator's {s['evaluator']:.6f}" for s in sts]
    lines += ["", "minutes per step: " + ", ".join(f"{k} {v}" for k, v in timer.minutes.items())]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the run's folder (kept: a finished stage is reused)")
    p.add_argument("--from", dest="folder", type=Path, default=None, help="the folder of your a11_capstone.py")
    p.add_argument("--model", type=Path, default=None, help="a model folder (default: SmolLM2, fetched)")
    args = p.parse_args(argv)
    summary = run(load_capstone(args.folder), args.out, args.model)
    print((args.out / "results.md").read_text())
    return 0 if summary["claims"] else 1


if __name__ == "__main__":
    sys.exit(main())
