"""The experiment engine behind `l2v demo` and scripts/recipe.py: train each stage once into a
folder, score each row once, compare rows with paired bootstrap intervals.

    train_once(dest, stage, *args, **kw)     a finished adapter is reused, a stopped run resumed
    evaluate_rows(model_dir, rows, suite=)   each Row scored once: its record is stored as JSON and read
                                             back while its settings and adapters are the same; the
                                             untrained causal rows share one forward pass
    compare_rows(records, claims)            (better, worse) row pairs: differences, 95 % intervals
    verdict(d)                               an interval's reading: holds, reversed, within the noise
    Timer(), write_json(path, obj)           minutes per step; JSON written whole or not at all

Every file is written whole or not at all (files.write_atomic): a run killed at any moment
leaves nothing half-written for the next run to read back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

from ..runtime.files import write_atomic
from ..sources.suites import SUITES
from ..tokenizer import DEFAULT_MAX_LENGTH, INSTRUCTION_RULE

# The suite version a record that names none was scored on (records before versions were recorded).
UNVERSIONED = {"l2v-dev": 2, "l2v-mini": 2, "l2v-mini-quick": 2, "l2v-mini-smoke": 2}


def suite_version(record: dict) -> int | None:
    """The version of the suite a record was scored on: another version has other tasks or texts."""
    return record.get("suite_version", UNVERSIONED.get(record.get("suite")))


def write_json(path, obj) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2) + "\n")


class Timer:
    """Minutes per named step of a run, for its summary: timer("train MNTP", fn, *args)."""

    def __init__(self):
        self.minutes: dict[str, float] = {}

    def __call__(self, step: str, fn, *args, **kwargs):
        t = time.perf_counter()
        result = fn(*args, **kwargs)
        self.minutes[step] = round((time.perf_counter() - t) / 60, 2)
        return result


# ---------------------------------------------------------------- training


def finished(dest: Path) -> bool:
    """Whether a training run in `dest` has saved its adapter (an adapter is written last)."""
    from ..formats.peft import ADAPTER_WEIGHTS

    return (Path(dest) / ADAPTER_WEIGHTS).is_file()


def train_once(dest: Path, stage, *args, **kwargs) -> Path:
    """stage(*args, dest, **kwargs) unless its adapter is already there; a folder left by a stopped
    run (a checkpoint, no adapter yet) is resumed, not started over."""
    dest = Path(dest)
    if finished(dest):
        print(f"reusing {dest}")
        return dest
    stage(*args, dest, resume=dest.is_dir(), **kwargs)
    return dest


# ---------------------------------------------------------------- evaluation


class Row(NamedTuple):
    """One configuration to score, and the file its evaluation record is kept in."""
    name: str
    causal: bool
    pooling: str
    adapters: tuple  # LoRA folders, merged in order
    path: Path
    echo: bool = False  # echo embeddings: the text twice, the second copy pooled (Encoder.echo_inputs)


def stored(row: Row, model_dir, suite: str, autocast: bool, max_length: int, dtype=None) -> dict | None:
    """The record in row.path if it was scored the way it would be now: the same model, suite,
    attention, pooling, adapters, max length, dtype and autocast. Otherwise None: score it again."""
    if not Path(row.path).is_file():
        return None
    old = json.loads(Path(row.path).read_text())
    # 'eos' records from before l2v appended EOS lack appends_eos; older ones lack bootstrap intervals.
    # Records made before instructions were tokenised jointly with their text lack instructions="joint".
    stale = ((row.pooling == "eos" and "appends_eos" not in old) or "bootstrap" not in (old.get("tasks") or [{}])[0]
             or old.get("instructions") != INSTRUCTION_RULE
             or (suite in SUITES and suite_version(old) != SUITES[suite].version))
    was_autocast = old.get("autocast", old.get("bf16_autocast"))  # records before one name for it said bf16_autocast
    same = ((old.get("model"), old.get("suite"), old.get("causal"), old.get("pooling"), old.get("adapters"),
             old.get("max_length"), old.get("dtype", "float32"), was_autocast, old.get("echo", False))
            == (str(model_dir), suite, row.causal, row.pooling, [str(a) for a in row.adapters], max_length,
                str(dtype or "float32").removeprefix("torch."), autocast, row.echo))
    return old if same and not stale else None


def evaluate_rows(model_dir, rows: list[Row], *, suite: str, autocast: bool = False,
                  max_length: int = DEFAULT_MAX_LENGTH, dtype=None, timer: Timer | None = None,
                  **eval_kwargs) -> dict[str, dict]:
    """Score every row on `suite` → {row name: record}. A row whose stored record still holds
    (`stored`) is read back; the rest are scored and their records written to row.path.
    eval_kwargs: what else evaluate_model takes that does not change a score (device, batch_size, ...)."""
    from ..evaluate import evaluate_model, evaluate_model_poolings

    timer = timer or Timer()
    eval_kwargs = dict(suite=suite, autocast=autocast, max_length=max_length, dtype=dtype, **eval_kwargs)
    done = {}
    for row in rows:
        old = stored(row, model_dir, suite, autocast, max_length, dtype)
        if old is not None:
            done[row.name] = old
            print(f"reusing {row.path}")

    def keep(row, record):
        write_json(row.path, record)
        done[row.name] = record

    # The untrained causal rows differ only in pooling: one forward pass serves them all (appending
    # EOS leaves the earlier states of a causal model unchanged; Encoder.encode_poolings).
    shared = [row for row in rows if row.causal and not row.adapters and not row.echo and row.name not in done]
    if len(shared) > 1:
        print(f"evaluating {', '.join(row.name for row in shared)} on {suite} (one causal pass)")
        got = timer("evaluate Uni rows (one pass)", evaluate_model_poolings, model_dir,
                    [row.pooling for row in shared], **eval_kwargs)
        for row in shared:
            keep(row, got[row.pooling])
    for row in rows:
        if row.name not in done:
            print(f"evaluating {row.name} on {suite}")
            keep(row, timer(f"evaluate {row.name}", evaluate_model, model_dir, adapters=list(row.adapters),
                            causal=row.causal, pooling=row.pooling, echo=row.echo, **eval_kwargs))
    return done


# ---------------------------------------------------------------- comparison


def compare_rows(records: dict[str, dict], claims: list[tuple[str, str]], select=None) -> list[dict]:
    """Each claim (better row, worse row) with both rows in `records` ({name: record}): the difference
    of their suite averages × 100 with its paired 95 % bootstrap interval (`evaluate.compare`), and
    the same per task type under "types". select(task name) → bool: compare on those tasks only
    (one half of l2v-dev, say)."""
    from ..evaluate import compare

    def tasks(row):
        chosen = [t for t in records[row]["tasks"] if select is None or select(t["task"])]
        if not chosen:
            raise ValueError(f"compare_rows: no task of {row!r} was selected")
        return chosen

    out = []
    for a, b in claims:
        if a in records and b in records:
            diffs = compare(tasks(a), tasks(b))
            out.append({"claim": f"{a} > {b}", **diffs.pop("all"), "types": diffs})
    return out


def verdict(d: dict) -> str:
    """A difference's reading from its 95 % interval."""
    return "holds" if d["low"] > 0 else "reversed" if d["high"] < 0 else "within the noise"


def in_words(c: dict) -> str:
    """A compared claim in plain words: its reading on the average, then the task types by reading."""
    from ..evaluate import SHORT_NAMES

    by = {}
    for t, d in c["types"].items():
        by.setdefault(verdict(d), []).append(SHORT_NAMES[t])
    types = "; ".join(f"{v} on {', '.join(ts)}" for v, ts in by.items())
    return f"{c['claim']}: {verdict(c)} on the average ({c['diff']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}]); {types}"


def headline(c: dict, where: str) -> str:
    """The main claim (Bi + MNTP + SimCSE > Uni + mean) as one honest sentence about `where` it was measured."""
    readings = {verdict(d) for d in c["types"].values()}
    if readings == {"holds"}:
        said = "beats causal mean pooling on every task type"
    elif verdict(c) == "holds" and "reversed" not in readings:
        said = "beats causal mean pooling on the average, not beyond the noise on every task type"
    elif verdict(c) == "holds":
        said = "beats causal mean pooling on the average but loses on some task type"
    elif verdict(c) == "reversed":
        said = "does NOT beat causal mean pooling: it scores below it"
    else:
        said = "does NOT beat causal mean pooling: the difference is within the noise"
    return f"{where}: the trained bidirectional model {said} ({c['diff']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}])."
