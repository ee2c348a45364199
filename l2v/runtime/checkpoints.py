"""A training run's folder, and everything the loop keeps in it (train.py calls these):

    OUT/
      log.jsonl                    one JSON record a step (and an eval record now and then)
      checkpoint/                  adapter + trainer_state.pt (optimizer, schedule, RNG states, step,
                                   settings and inputs): what `--resume` continues exactly
      adapter_config.json,         the final adapter, in PEFT's format, where `--adapter OUT` finds it
      adapter_model.safetensors

`RunFolder(path, resume, overwrite)` is the check a run passes once, before it loads anything:
an earlier run is never written over unless asked. Every file is replaced whole or not at all
(files.py), and nothing holding NaN or inf is ever saved, so the checkpoint on disk is the last
finite one.
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import torch

from ..formats.peft import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    adapter_state,
    copy_lora_tensors,
    read_adapter,
    write_adapter,
)
from .checks import L2VError, NonFiniteError, first_non_finite
from .files import atomic_folder, recover_folder, write_atomic

CHECKPOINT_DIR, STATE_FILE, LOG_FILE = "checkpoint", "trainer_state.pt", "log.jsonl"
RUN_FILES = (LOG_FILE, CHECKPOINT_DIR, ADAPTER_WEIGHTS, ADAPTER_CONFIG)  # what marks a folder as a run's


class RunFolder:
    """OUT, checked: refuse to write over an earlier run unless asked (resume continues it, overwrite
    replaces it), and refuse a checkpoint folder holding files l2v did not write (they would be deleted)."""

    def __init__(self, path, resume: bool = False, overwrite: bool = False):
        self.path, self.resume = Path(path), resume
        if self.path.exists() and not self.path.is_dir():
            raise L2VError(f"--out {self.path} is a file, not a folder")
        found = [name for name in RUN_FILES if (self.path / name).exists()]
        if found and not resume and not overwrite:
            raise L2VError(f"{self.path} already holds a run ({', '.join(found)}); pass --resume to continue it or "
                           f"--overwrite to replace it")
        if self.checkpoint.is_dir():
            ours = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, STATE_FILE)
            foreign = sorted(p.name for p in self.checkpoint.iterdir() if p.name not in ours)
            if foreign:
                raise L2VError(f"{self.checkpoint} holds {', '.join(foreign)}, which l2v did not write; move it away "
                               f"first")

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_DIR

    def recover_checkpoint(self) -> bool:
        """Whether OUT holds a checkpoint, once one a hard kill left half-swapped is put back."""
        recover_folder(self.checkpoint)
        return (self.checkpoint / STATE_FILE).is_file()

    def last_good(self, last_saved: int) -> str:
        """The end of a stopped run's error: where its last finite state is."""
        if last_saved and (self.checkpoint / STATE_FILE).is_file():
            return (f"The last finite checkpoint (step {last_saved}) is in {self.checkpoint}; lower the learning "
                    f"rate, or check the data.")
        return "No checkpoint was written; lower the learning rate, or check the data."

    def publish_adapter(self):
        """The final adapter, next to the log, where `--adapter OUT` finds it (file by file, atomically)."""
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            write_atomic(self.path / name, (self.checkpoint / name).read_bytes())


# ---------------------------------------------------------------- checkpoints


def rng_state() -> dict:
    """Every random number generator a step draws from: what a resumed step must draw again."""
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python_rng": random.getstate()}


def save_checkpoint(folder: Path, model, optimizer, scheduler, step: int, settings, rng: dict, inputs: dict):
    """The adapter and the trainer's state after `step` optimizer steps, replacing the previous ones."""
    bad = first_non_finite(adapter_state(model).items())
    if bad:  # never replace a finite checkpoint with a broken one
        raise NonFiniteError(f"not saving the checkpoint at step {step}: {bad} holds NaN or inf values")
    with atomic_folder(folder) as tmp:
        write_adapter(tmp, model, inputs.get("base_model"))
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **rng,
                    "config": asdict(settings), "inputs": inputs}, tmp / STATE_FILE)


def load_checkpoint(folder: Path, model, optimizer, scheduler, settings=None, inputs: dict | None = None) -> int:
    """Put a checkpoint's adapter, optimizer, schedule and RNG states back → its step. With `settings`,
    refuse one made with other settings or inputs (check_same_settings)."""
    device = next(model.parameters()).device  # not where the saving process had it (GPU 0 for rank 0)
    try:  # our own file; weights_only: no code runs
        state = torch.load(folder / STATE_FILE, weights_only=True, map_location=device)
    except Exception as e:  # truncated or not ours: torch's errors do not name the file
        raise L2VError(f"{folder / STATE_FILE}: cannot be read ({str(e).splitlines()[0]}); "
                       f"start afresh with --overwrite") from None
    if settings is not None:
        check_same_settings(folder, state, settings, inputs or {})
    copy_lora_tensors(model, read_adapter(folder)[1], folder, what="checkpoint")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"].cpu())  # RNG states are CPU byte tensors wherever the model is
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    random.setstate(_as_tuple(state["python_rng"]))
    return int(state["step"])


def check_same_settings(folder: Path, state: dict, settings, inputs: dict):
    """--resume continues the run in the checkpoint; other settings would silently not apply (the
    optimizer and schedule come from the checkpoint), so a difference is an error that names it."""
    may_change = {f.name for f in fields(settings) if f.metadata.get("resume_may_change")}
    saved, now = saved_settings(state), {**asdict(settings), **inputs}
    differ = [f"{k}: checkpoint {saved[k]!r}, now {now[k]!r}" for k in now
              if k in saved and k not in may_change and saved[k] != now[k]]
    if differ:
        raise L2VError(f"--resume: settings differ from the checkpoint in {folder} ({'; '.join(differ)}); "
                       f"use the run's settings, or start afresh with --overwrite")


def saved_settings(state: dict) -> dict:
    """What a checkpoint was made with, under today's names: checkpoints written before settings.py
    kept some settings beside the loop's (`settings`), as autocast_bf16, dropout, PEFT's LoRA names."""
    saved = {**state.get("config", {}), **state.get("settings", {}), **state.get("inputs", {})}
    renamed = {"autocast_bf16": "autocast", "dropout": "attention_dropout"}
    saved = {renamed.get(k, k): v for k, v in saved.items()}
    lora = saved.get("lora")
    if isinstance(lora, dict) and "lora_alpha" in lora:
        saved["lora"] = dict(r=lora["r"], alpha=lora["lora_alpha"], dropout=lora["lora_dropout"])
    return saved


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# ---------------------------------------------------------------- the log


class Log:
    """log.jsonl: the records of the steps up to `keep_through` (the checkpoint a resume starts
    from) are kept, later ones dropped (they are redone); new records are appended as they happen.
    Only the process that writes (`write`; one under torchrun) touches the file."""

    def __init__(self, path: Path, keep_through: int, write: bool = True):
        self.records = read_log(path, keep_through) if keep_through else []
        self.file = None
        if write:
            write_atomic(path, "".join(json.dumps(r) + "\n" for r in self.records))
            self.file = open(path, "a")

    def __call__(self, record: dict):
        self.records.append(record)
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self):
        if self.file is not None:
            self.file.close()


def read_log(path: Path, keep_through: int) -> list[dict]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if all(not rest.strip() for rest in lines[n:]):  # the last line, cut off by a kill: dropped
                warnings.warn(f"{path}, line {n}: cut off (the run was killed while writing it); dropped")
                break
            raise L2VError(f"{path}, line {n}: not valid JSON; fix or remove the line") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise L2VError(f"{path}, line {n}: not a log record (no integer 'step')")
        records.append(record)
    return [r for r in records if r["step"] <= keep_through]  # steps after the checkpoint are redone


def print_summary(name: str, records: list[dict], seconds: float, out: Path):
    losses = [r["loss"] for r in records if "loss" in r]
    evals = [r for r in records if "eval" in r]
    if not losses:
        return
    k = max(1, len(losses) // 10)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    lines = [f"{name}: {len(losses)} steps in {seconds / 60:.1f} min; loss {first:.4f} → {last:.4f} "
             f"(mean of first/last {k})"]
    if len(evals) >= 2:
        a, b = evals[0]["eval"], evals[-1]["eval"]
        lines.append("  eval " + ", ".join(f"{key} {a[key]:.4f} → {b[key]:.4f}" for key in a if key in b))
    lines.append(f"  adapter and log.jsonl in {out}")
    print("\n".join(lines))
