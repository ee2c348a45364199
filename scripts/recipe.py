"""The recipe search behind the experiment record (docs/results.md): train a configuration, score it
on the l2v-dev suite, compare it with Uni + mean with paired bootstrap intervals. Every run is logged.

    python scripts/recipe.py baselines                   # Uni + mean/last/EOS/weighted mean (one pass), Bi + mean
    python scripts/recipe.py echo                        # echo embeddings, zero-shot: Uni + echo mean, Bi + echo mean
    python scripts/recipe.py run NAME [--mntp k=v ...] [--simcse k=v ... | --supervised k=v ...] [--seed S]
                                 [--each-stage] [--pooling weighted_mean] [--train-only] [--fp32]
    python scripts/recipe.py average NAME --seeds S1 S2  # the mean of two seeds' updates, scored as NAME-avg
    python scripts/recipe.py table [--half A|B] [--markdown]  # every logged run against Uni + mean, per type
    python scripts/recipe.py halves                      # choose on one half of l2v-dev (mean over seeds), check on the other
    python scripts/recipe.py budgets                     # l2v demo's budgets: seed spread, each finding per type
    python scripts/recipe.py plot [--png PATH]           # score gap against training tokens, per type (PNG)

Stages: `--mntp none` or `--simcse none` skips one; otherwise k=v pairs override the CPU preset
(steps, batch_size, max_length, lr, mask_prob, attention_dropout, lora_r, ..., data; SimCSE
`data=paragraphs` trains on whole Wikipedia paragraphs instead of sentences, `data=mixed` on both
shuffled together). `--supervised data=mined` trains the paper's supervised step after MNTP on the triples
`l2v mine-pairs` makes from the Wikipedia dump (weak pairs; `--simcse none` with it). Runs go to runs/recipe/NAME-sS/ (adapters and eval.json; `--each-stage`: eval-mntp.json too, logged as NAME/mntp); the baselines'
records to runs/recipe/baselines/; runs/recipe/log.jsonl gets one line per run and record.
Training and scoring are l2v.tools.experiment's, as in `l2v demo`: a finished stage or a still-valid
evaluation is read back, not redone; bf16 autocast where it is native.
Not a test: it trains, for minutes to an hour.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from l2v.evaluate import SHORT_NAMES, compare
from l2v.sources.dev import HALVES as DEV_HALVES
from l2v.tools.experiment import Row, Timer, evaluate_rows, finished, train_once, verdict, write_json

ROOT = Path("runs/recipe")
MODEL = Path("weights/smollm2-135m-instruct")
SUITE = "l2v-dev"
TYPES = ("sts", "pair_classification", "classification", "retrieval")  # l2v-dev's task types, in column order
HALVES = tuple(DEV_HALVES)  # l2v-dev's halves by source: "A", "B"


KINDS = {"L/S": "-reuse-sts",  # long against short: a long text against 3 sentences, k of them its own
         "L/L": "-subject-sts"}  # long against long within one subject: verbatim, reworded or unrelated (v3)


def tasks_of(record: dict, half: str | None = None, kind: str | None = None) -> list[dict]:
    """A record's task results: all, or one half's; kind ("L/S", "L/L"): only those STS tasks."""
    from l2v.sources.dev import half as half_of

    return [t for t in record["tasks"] if (half is None or half_of(t["task"]) == half) and
            (kind is None or t["task"].endswith(KINDS[kind]))]


def versus(a: dict, b: dict, half: str | None = None) -> dict[str, dict]:
    """compare() of two records on the whole suite or one half, plus the long-text kinds (KINDS)."""
    d = compare(tasks_of(a, half), tasks_of(b, half))
    for kind in KINDS:
        d[kind] = compare(tasks_of(a, half, kind), tasks_of(b, half, kind))["sts"]
    return d


def averages(record: dict, half: str | None = None) -> dict[str, float]:
    from l2v.evaluate import type_averages

    out = type_averages(tasks_of(record, half))
    for kind in KINDS:
        out[kind] = type_averages(tasks_of(record, half, kind))["sts"]
    return out


def mean_record(records: list[dict]) -> dict:
    """Several seeds' records as one: each task's score and bootstrap resamples averaged over seeds (every
    record resamples a task's items the same way, so the mean's resamples stay paired with other records')."""
    import numpy as np

    from l2v.evaluate import type_averages

    if len(records) == 1:
        return records[0]
    tasks = []
    for results in zip(*(r["tasks"] for r in records), strict=True):
        assert len({t["task"] for t in results}) == 1
        tasks.append({**results[0], "main_score": float(np.mean([t["main_score"] for t in results])),
                      "bootstrap": np.mean([t["bootstrap"] for t in results], axis=0).tolist()})
    return {**records[0], "tasks": tasks, "averages": type_averages(tasks)}


COLS = list(TYPES) + list(KINDS) + ["all"]


def interval(d: dict) -> str:
    """A compared difference × 100 with its paired 95 % interval: "+1.2 [−0.3, +2.6]"."""
    return f"{d['diff']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"
NAMES = {**SHORT_NAMES, **{k: k for k in KINDS}}


def autocast() -> bool:
    from l2v.runtime.precision import native_bf16

    return native_bf16("cpu")


def score(rows: list[Row]) -> dict[str, dict]:
    return evaluate_rows(MODEL, rows, suite=SUITE, autocast=autocast(), show_progress=False)


def paragraphs_file() -> Path:
    """Whole Wikipedia paragraphs, one a line (SimCSE on long spans instead of sentences)."""
    from l2v.data import read_texts

    path = ROOT / "wiki-paragraphs.txt"
    if not path.is_file():
        ROOT.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(p.replace("\n", " ") for p in read_texts("wiki") if len(p.split()) >= 20) + "\n")
    return path


def mixed_file() -> Path:
    """Sentences and whole paragraphs, shuffled together, one a line (SimCSE on spans of mixed lengths:
    a batch holds short and long texts, as similarity between texts of unequal lengths needs)."""
    import random

    from l2v.data import read_sentences

    path = ROOT / "wiki-mixed.txt"
    if not path.is_file():
        spans = read_sentences("wiki") + paragraphs_file().read_text().splitlines()
        random.Random(0).shuffle(spans)
        path.write_text("\n".join(spans) + "\n")
    return path


def mined_file() -> Path:
    """`l2v mine-pairs`' triples from the Wikipedia dump (all kinds, seed 0): the supervised stage's weak pairs."""
    from l2v.sources.fetch import WIKI_DUMP, fetch_wheel_file
    from l2v.sources.mined import mine_pairs

    path = ROOT / "mined.jsonl"
    if not path.is_file():
        ROOT.mkdir(parents=True, exist_ok=True)
        mine_pairs(fetch_wheel_file(WIKI_DUMP), path)
    return path


DATA = {"paragraphs": paragraphs_file, "mixed": mixed_file, "mined": mined_file}  # recipe-only data, made on first use


def parse(pairs: list[str]) -> dict | None:
    if pairs == ["none"]:
        return None
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value if key == "data" else (int(value) if value.lstrip("-").isdigit() else float(value))
    return out


def entries() -> list[dict]:
    """The log's runs scored on today's l2v-dev (a record of an older version has other tasks: left out)."""
    from l2v.sources.suites import SUITES
    from l2v.tools.experiment import suite_version

    path = Path(LOG) if LOG else ROOT / "log.jsonl"
    logged = [json.loads(line) for line in path.open()] if path.is_file() else []
    now = [e for e in logged if suite_version(e["record"]) == SUITES[SUITE].version]
    if len(now) < len(logged) and not _SAID:
        _SAID.append(True)  # once a command, not at every read
        print(f"({len(logged) - len(now)} logged record(s) of an older l2v-dev left out)")
    return now


_SAID: list = []
LOG = None  # --log: read another run log (docs/data/recipe-v3/log.jsonl) for table, halves, plot


def log(entry: dict):
    """Append a run to the log, unless the log already holds it with this very record (read back)."""
    if any((e["name"], e["seed"], e["record"]) == (entry["name"], entry["seed"], entry["record"]) for e in entries()):
        return
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / "log.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def baselines(args):
    causal = ("mean", "last", "eos", "weighted_mean")  # one forward pass serves them all
    rows = [Row(f"uni-{p}", True, p, (), ROOT / "baselines" / f"uni-{p}.json") for p in causal]
    rows.append(Row("bi-mean", False, "mean", (), ROOT / "baselines" / "bi-mean.json"))
    untrained("baselines", rows, args)


def echo(args):
    """Echo embeddings, zero-shot (no training): the text twice, the second copy's tokens pooled, causal and
    bidirectional."""
    untrained("echo rows", [Row(f"{a}-echo-mean", a == "uni", "mean", (), ROOT / "echo" / f"{a}-echo-mean.json",
                                echo=True) for a in ("uni", "bi")], args)


def untrained(what: str, rows: list[Row], args):
    """Score rows that train nothing, log each (seed None), then the table."""
    timer = Timer()
    records = timer(what, score, rows)
    for row in rows:
        log({"name": row.name, "seed": None, "minutes_train": 0, "record": records[row.name]})
    print(f"{what} in {timer.minutes[what]:.1f} min")
    table(args)


def average(args):
    """Two or more seeds of run NAME as one model: per stage, the mean of the seeds' updates scale·B·A
    (`formats.peft.average_adapters`, exact), the averaged stages merged in order as the runs' were."""
    from l2v.formats.peft import average_adapters
    from l2v.tools.experiment import finished

    runs = [ROOT / f"{args.name}-s{seed}" for seed in args.seeds]
    stages = [st for st in ("mntp", "simcse", "supervised") if finished(runs[0] / st)]
    missing = [str(r / st) for r in runs for st in stages if not finished(r / st)] if stages else [str(runs[0])]
    if len(runs) < 2 or missing:
        raise SystemExit(f"recipe.py average: needs two or more finished seeds of {args.name}; missing: "
                         f"{', '.join(missing) or 'a second seed'}")
    seeds = "+".join(map(str, args.seeds))
    name = f"{args.name}-avg-s{seeds}"  # one name per set of seeds: two averages are not seeds of one run
    out = ROOT / name
    adapters = tuple(out / st if finished(out / st) else average_adapters([r / st for r in runs], out / st)
                     for st in stages)
    record = score([Row(name, False, "mean", adapters, out / "eval.json")])[name]
    first = next((e for e in reversed(entries()) if e["name"] == args.name and e["seed"] in args.seeds),
                 {})  # the averaged runs' settings, if they were scored
    log({**{k: first.get(k) for k in ("mntp", "simcse", "supervised", "fp32_train")}, "name": name, "seed": seeds,
         "minutes_train": {}, "record": record})
    table(args)


def train(stage: str, changes: dict, out: Path, args, adapter=None) -> tuple[Path, float | None]:
    """One stage of a run, trained once into out/stage → (the adapter, its training minutes: measured
    now, or logged by the run that trained it)."""
    from l2v.mntp import run_mntp
    from l2v.settings import resolve
    from l2v.simcse import run_simcse
    from l2v.supervised import run_supervised

    changes = dict(changes)
    data = changes.pop("data", "wiki" if stage != "supervised" else "mined")
    data = DATA[data]() if data in DATA else data
    # --fp32: train in fp32 even where bf16 is native, so the minutes are a laptop's (scoring keeps autocast)
    settings = resolve(stage, **changes, seed=args.seed, autocast=False if args.fp32 else (autocast() or None))
    fn, inputs = {"mntp": (run_mntp, (MODEL, data)), "simcse": (run_simcse, (MODEL, adapter, data)),
                  "supervised": (run_supervised, (MODEL, adapter, data))}[stage]
    dest, minutes_file = out / stage, out / "minutes.json"
    minutes = json.loads(minutes_file.read_text()) if minutes_file.is_file() else {}
    precision = "bf16 autocast" if settings.autocast else "fp32"
    if finished(dest) and minutes.get("precision", {}).get(stage, precision) != precision:
        raise SystemExit(f"recipe.py: {dest} was trained in {minutes['precision'][stage]}, not {precision}; "
                         f"give the run another NAME")
    if not finished(dest):
        timer = Timer()
        timer(stage, train_once, dest, fn, *inputs, settings=settings)
        write_json(minutes_file, {**minutes, stage: timer.minutes[stage],
                                  "precision": {**minutes.get("precision", {}), stage: precision}})
    return dest, logged_minutes(out, args, stage)


def logged_minutes(out: Path, args, stage):
    """Training minutes of a stage: from the run folder's minutes.json, else from the log (older runs)."""
    path = out / "minutes.json"
    minutes = json.loads(path.read_text()) if path.is_file() else {}
    if stage in minutes:
        return minutes[stage]
    return next((e["minutes_train"].get(stage) for e in entries() if (e["name"], e["seed"]) == (args.name, args.seed)),
                None)


def run(args):
    mntp, supervised = parse(args.mntp), parse(args.supervised)
    simcse = None if supervised is not None and not args.simcse else parse(args.simcse)  # --supervised: no SimCSE
    if simcse is not None and supervised is not None:
        raise SystemExit("recipe.py run: --simcse and --supervised are two second stages; give one")
    out = ROOT / f"{args.name}-s{args.seed}"
    adapters, minutes = [], {}
    if mntp is not None:
        adapter, minutes["mntp"] = train("mntp", mntp, out, args)
        adapters.append(adapter)
    for stage, changes in (("simcse", simcse), ("supervised", supervised)):  # on top of the MNTP adapter
        if changes is not None:
            adapter, minutes[stage] = train(stage, changes, out, args, adapter=adapters[0] if adapters else None)
            adapters.append(adapter)
    second = supervised if supervised is not None else simcse
    if args.train_only:
        print(f"trained {out}: {minutes} min")
        return
    runs = []  # (row, its stages' settings, their training minutes)
    if args.each_stage and mntp is not None and second is not None:  # the MNTP adapter alone too: "Bi + MNTP"
        runs.append((Row(f"{args.name}/mntp", False, "mean", tuple(adapters[:1]), out / "eval-mntp.json"),
                     {"mntp": mntp}, {"mntp": minutes["mntp"]}))
    pooled = "" if args.pooling == "mean" else f":{args.pooling}"  # another pooling: its own row and record
    runs.append((Row(args.name + pooled, False, args.pooling, tuple(adapters), out / f"eval{pooled}.json"),
                 {"mntp": mntp, "simcse": simcse, **({"supervised": supervised} if supervised is not None else {})},
                 minutes))
    records = score([row for row, *_ in runs])
    for row, stages, trained in runs:
        log({"name": row.name, "seed": args.seed, "mntp": None, "simcse": None, **stages, "fp32_train": args.fp32,
             "minutes_train": trained, "record": records[row.name]})
    table(args)


def table(args):
    """Every logged run: scores per type (whole suite or --half), then its difference from Uni + mean."""
    logged = entries()
    base = next(e for e in reversed(logged) if e["name"] == "uni-mean")["record"]
    if args.markdown:
        return markdown(logged, base, args.half)
    where = f"half {args.half}" if args.half else "the whole suite"
    print(f"l2v-dev, {where}; L/S = long against short (*-reuse-sts), L/L = long against long within one subject "
          f"(*-subject-sts)")
    print(f"{'run':28} " + " ".join(f"{NAMES[c]:>6}" for c in COLS) + "   − Uni + mean: diff [95% CI]")
    for e in logged:
        avg, d = averages(e["record"], args.half), versus(e["record"], base, args.half)
        cells = " ".join(f"{100 * avg[c]:6.2f}" for c in COLS)
        diffs = "  ".join(f"{NAMES[c]} {interval(d[c])}" for c in COLS)
        seed = "" if e["seed"] is None else f" s{e['seed']}"
        print(f"{e['name'] + seed:28} {cells}   {diffs}")


BASELINES = {"uni-mean": "Uni + mean", "uni-last": "Uni + last token", "uni-eos": "Uni + EOS",
             "uni-weighted_mean": "Uni + weighted mean", "bi-mean": "Bi + mean, untrained",
             "uni-echo-mean": "Uni + echo mean (zero-shot)", "bi-echo-mean": "Bi + echo mean (zero-shot)"}


def label(e: dict) -> str:
    """A logged run as a reader names it: "Uni + EOS", "cpu s42: Bi + MNTP + SimCSE"."""
    if e["seed"] is None:
        return BASELINES.get(e["name"], e["name"])
    steps = "Bi + " + " + ".join(s for s in ("MNTP", "SimCSE") if e.get(s.lower()) is not None)
    if e.get("supervised") is not None:
        steps += " + weak pairs"
    if "-avg-s" in e["name"]:
        steps += f", the mean update of seeds {e['seed'].replace('+', ', ')}"
        return f"{e['name'].split('-avg-s')[0]} avg: {steps}"
    name = e["name"]
    if name.endswith("/mntp"):
        name, steps = name[: -len("/mntp")], "Bi + MNTP"
    return f"{name} s{e['seed']}: {steps}"


def seed_groups(logged: list[dict]) -> dict[str, list[dict]]:
    """Trained runs by name → the newest entry of each seed, in seed order."""
    last = {(e["name"], e["seed"]): e for e in logged if e["seed"] is not None}
    groups = {}
    for (name, seed), e in sorted(last.items(), key=lambda kv: (kv[0][0], str(kv[0][1]).zfill(9))):
        groups.setdefault(name, []).append(e)
    return groups


def spread(runs: list[dict], base: dict, half: str | None) -> dict[str, float]:
    """The seed spread of each column's difference from `base`: its standard deviation over seeds."""
    import numpy as np

    diffs = [versus(e["record"], base, half) for e in runs]
    return {c: float(np.std([d[c]["diff"] for d in diffs], ddof=1)) for c in COLS}


def markdown(logged: list[dict], base: dict, half: str | None):
    """The table as markdown (docs/results.md's two-half tables): Uni + mean's scores, then every other run's
    difference from it per type, with its paired 95 % interval; a run of several seeds gets a row for their
    mean too, each cell with the seed spread (± the standard deviation of the seeds' differences)."""
    avg = averages(base, half)
    print("| row | train min | " + " | ".join(NAMES[c] for c in COLS) + " |")
    print("|---|---:|" + "---:|" * len(COLS))
    print("| Uni + mean (scores) | – | " + " | ".join(f"{100 * avg[c]:.2f}" for c in COLS) + " |")
    groups = seed_groups(logged)
    for e in logged:
        if e["name"] == "uni-mean":
            continue
        d = versus(e["record"], base, half)
        minutes = sum(v or 0 for v in e["minutes_train"].values()) if e["minutes_train"] else 0
        name = label(e)
        cells = " | ".join(interval(d[c]) for c in COLS)
        print(f"| {name} | {f'{minutes:.1f}' if minutes else '–'} | {cells} |")
        runs = groups.get(e["name"], [])
        if len(runs) > 1 and e is next(x for x in reversed(logged) if x["name"] == e["name"]):
            d, sd = versus(mean_record([r["record"] for r in runs]), base, half), spread(runs, base, half)
            minutes = sum(sum(v or 0 for v in r["minutes_train"].values()) for r in runs) / len(runs)
            cells = " | ".join(f"{interval(d[c])} ±{sd[c]:.1f}" for c in COLS)
            print(f"| **{e['name']}: mean of {len(runs)} seeds** ± seed sd | {minutes:.1f} | {cells} |")


def halves(args):
    """The two-half check. Choose the best trained configuration by its average on one half (a run of
    several seeds by their mean), then read every type's difference from Uni + mean, the untrained Bi + mean
    and (once scored) zero-shot Uni + echo mean on the other half, where no choice was made. A finding counts
    when it holds there."""
    logged = entries()
    last = {(e["name"], e["seed"]): e for e in logged}
    named = {name: e for (name, seed), e in last.items() if seed is None}
    groups = seed_groups(logged)
    records = {name: mean_record([e["record"] for e in runs]) for name, runs in groups.items()}
    for chosen_on, check_on in (HALVES, HALVES[::-1]):
        best = max(records, key=lambda n: versus(records[n], named["uni-mean"]["record"], chosen_on)["all"]["diff"])
        runs = groups[best]
        seeds = ", ".join(str(e["seed"]) for e in runs)
        print(f"\nchosen on half {chosen_on}: {best} (seeds {seeds}{', their mean' if len(runs) > 1 else ''}); "
              f"checked on half {check_on}:")
        for half in (chosen_on, check_on):
            for ref in ("uni-mean", "bi-mean", "uni-echo-mean"):
                if ref not in named:
                    continue
                d = versus(records[best], named[ref]["record"], half)
                sd = spread(runs, named[ref]["record"], half) if len(runs) > 1 else None
                cells = " | ".join(f"{NAMES[c]} {interval(d[c])}" + (f" ±{sd[c]:.1f}" if sd else "") for c in COLS)
                print(f"  half {half} − {ref:13} {cells}")
    print("\n[95% paired interval over resampled items]" + (" ±seed sd" if any(len(r) > 1 for r in groups.values())
                                                            else ""))


# `l2v demo`'s budgets as recipe runs: (the full recipe's run name, the SimCSE-alone run's name).
BUDGET_RUNS = {"quick": ("demo-quick", "simcse-only-quick"), "cpu": ("demo-cpu", "simcse-only"),
               "long": ("demo-x4", "simcse-only-x4")}


def budgets(args):
    """Per demo budget: the full recipe over its seeds (mean ± sd per type), then each of the paper's
    findings per type, as paired differences with 95 % intervals (one line per seed run)."""
    import numpy as np

    logged = entries()
    last = {(e["name"], e["seed"]): e for e in logged}  # the newest entry of each run
    named = {name: e for (name, seed), e in last.items() if seed is None}
    cols = list(TYPES) + ["all"]

    marks = {"holds": "+", "reversed": "−", "within the noise": "~"}

    def cell(d):
        mark = marks[verdict(d)]
        return f"{interval(d)} {mark}"

    print("+ holds beyond the interval, ~ within the noise, − reversed; " + " | ".join(SHORT_NAMES[c] for c in cols))
    for budget, (full, alone) in BUDGET_RUNS.items():
        runs = [e for (name, seed), e in sorted(last.items(), key=lambda kv: str(kv[0])) if name == full]
        if not runs:
            continue
        scores = np.array([[100 * e["record"]["averages"][c] for c in cols] for e in runs])
        minutes = [sum(v or 0 for v in e["minutes_train"].values()) for e in runs]
        spread = " | ".join(f"{m:.2f} ± {sd:.2f}" for m, sd in zip(scores.mean(0), scores.std(0, ddof=1)
                                                                   if len(runs) > 1 else [0] * len(cols)))
        print(f"\n{budget}: {full}, seeds {', '.join(str(e['seed']) for e in runs)}; training "
              f"{min(minutes):.1f}–{max(minutes):.1f} min; mean ± sd over seeds: {spread}")
        pairs = [("Uni + mean > Uni + EOS", named["uni-mean"], named["uni-eos"]),
                 ("Uni + mean > Bi + mean (untrained)", named["uni-mean"], named["bi-mean"])]
        for e in runs:
            s = f" s{e['seed']}"
            mntp = last.get((f"{full}/mntp", e["seed"]))
            only = last.get((alone, e["seed"]))
            pairs.append(("Bi + MNTP + SimCSE > Uni + mean" + s, e, named["uni-mean"]))
            pairs.append(("Bi + MNTP + SimCSE > Bi + mean" + s, e, named["bi-mean"]))
            if mntp:
                pairs.append(("Bi + MNTP > Bi + mean" + s, mntp, named["bi-mean"]))
                pairs.append(("Bi + MNTP + SimCSE > Bi + MNTP" + s, e, mntp))
            if only:
                pairs.append(("Bi + MNTP + SimCSE > Bi + SimCSE" + s, e, only))
        for claim, a, b in pairs:
            d = compare(a["record"]["tasks"], b["record"]["tasks"])
            print(f"  {claim:42} " + " | ".join(cell(d[c]) for c in cols))


def training_tokens(entry: dict) -> int:
    """Nominal tokens seen in training: steps × batch × max_length per stage (MNTP blocks are packed
    to exactly max_length; SimCSE counts its two views, sentences shorter than max_length count full)."""
    from dataclasses import asdict

    from l2v.settings import PRESETS

    total = 0
    for stage, views in (("mntp", 1), ("simcse", 2), ("supervised", 3)):  # a triple: query, positive, negative
        if entry.get(stage) is not None:
            c = {**asdict(PRESETS[stage]["cpu"]), **entry[stage]}  # the logged changes to the CPU preset
            total += c["steps"] * c["batch_size"] * c["max_length"] * views
    return total


def kind_of(entry: dict) -> str:
    """Which stages a logged run trained (the plot's colours)."""
    if entry["seed"] is None:
        return "untrained"
    if entry.get("supervised") is not None:
        return "MNTP + weak pairs"
    if entry["name"].endswith("/mntp") or entry.get("simcse") is None:
        return "MNTP alone"
    if entry.get("mntp") is None:
        return "SimCSE alone"
    return "long spans" if entry["name"] == "long" else "MNTP + SimCSE"


def plot(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logged = entries()
    base = next(e for e in reversed(logged) if e["name"] == "uni-mean")["record"]["tasks"]
    trained = sorted((e for e in logged if e["seed"] is not None and "-avg-s" not in e["name"]), key=training_tokens)
    untrained = next(e for e in reversed(logged) if e["name"] == "bi-mean")
    style = {"untrained": ("k", "s"), "MNTP alone": ("tab:blue", "^"), "SimCSE alone": ("tab:orange", "v"),
             "MNTP + SimCSE": ("tab:red", "o"), "long spans": ("tab:gray", "D"), "MNTP + weak pairs": ("tab:green", "P")}
    budget_of = {"demo-x2": "2× cpu", **{full: budget for budget, (full, _) in BUDGET_RUNS.items()}}
    fig, axes = plt.subplots(1, len(TYPES) + 1, figsize=(16, 4.4), sharey=False)
    for ax, column in zip(axes, list(TYPES) + ["all"]):
        labelled = set()
        for e in [untrained] + trained:
            d = compare(e["record"]["tasks"], base)[column]
            x = max(training_tokens(e), 1e3) if e["seed"] is not None else 1e3
            kind = kind_of(e)
            color, marker = style[kind]
            ax.errorbar([x], [d["diff"]], yerr=[[d["diff"] - d["low"]], [d["high"] - d["diff"]]], fmt=marker,
                        color=color, capsize=3, alpha=0.8, label=kind if kind not in labelled else None)
            labelled.add(kind)
            if kind == "MNTP + SimCSE" and e["name"] not in labelled:  # one name per budget, not per seed
                labelled.add(e["name"])
                ax.annotate(budget_of.get(e["name"], e["name"]), (x, d["high"]), fontsize=8, ha="center",
                            xytext=(0, 4), textcoords="offset points")
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xscale="log", title=SHORT_NAMES[column], xlabel="training tokens (log; untrained at 1e3)")
    axes[0].set_ylabel("Bi + LLM2Vec steps − Uni + mean (× 100, 95 % CI)")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("l2v-dev: the trained bidirectional model against causal mean pooling, by training budget "
                 "(every seed a point)")
    fig.tight_layout()
    png = Path(args.png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["baselines", "echo", "run", "average", "table", "halves", "budgets", "plot"])
    parser.add_argument("name", nargs="?")
    parser.add_argument("--mntp", nargs="+", default=[])
    parser.add_argument("--simcse", nargs="+", default=[])
    parser.add_argument("--supervised", nargs="+", default=["none"],
                        help="run: a supervised stage after MNTP (k=v overrides; data=mined: the mined triples)")
    parser.add_argument("--fp32", action="store_true", help="run: train in fp32 where bf16 is native (a laptop's minutes)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", type=int, nargs="+", default=[], help="average: the seeds of run NAME to average")
    parser.add_argument("--each-stage", action="store_true", help="run: score the MNTP adapter alone too")
    parser.add_argument("--train-only", action="store_true", help="run: train the stages, score later (a run again)")
    parser.add_argument("--png", default="docs/figures/recipe-curve.png")
    parser.add_argument("--half", choices=HALVES, help="table: one half of l2v-dev only")
    parser.add_argument("--markdown", action="store_true", help="table: as markdown, differences from Uni + mean")
    parser.add_argument("--pooling", default="mean", choices=["mean", "weighted_mean"],
                        help="run: score the trained model with this pooling (row NAME:POOLING)")
    parser.add_argument("--log", help="table, halves, budgets, plot: read this run log instead of runs/recipe/log.jsonl")
    args = parser.parse_args()
    global LOG
    LOG = args.log
    torch.set_num_threads(2)
    {"baselines": baselines, "echo": echo, "run": run, "average": average, "table": table, "halves": halves, "budgets": budgets,
     "plot": plot}[args.what](args)


if __name__ == "__main__":
    main()
