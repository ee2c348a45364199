"""One small training loop for every LLM2Vec stage (MNTP, SimCSE, supervised), nanoGPT style.
(stage.py puts the prologue every stage shares in front of it: load, merge, LoRA.)

A stage supplies its own part as a `Stage` of two or three functions, and the loop does the rest:

    batch(step, micro) -> batch          deterministic in (step, micro), so "where the data was"
                                         is just the step number and resuming is exact
    loss(model, batch) -> (loss, metrics)
    evaluate(model) -> metrics           optional: at the start, every eval_every steps, at the end

The loop: AdamW over the trainable (LoRA) parameters, linear warmup then linear decay, gradient
accumulation, gradient clipping, bf16 autocast (on CUDA, and on CPU when asked), a tqdm bar,
`log.jsonl`, an eval every N
steps, and atomic checkpoints (adapter + optimizer + scheduler + RNG states + step) that `resume`
continues exactly. Ctrl-C and SIGTERM (what a cluster sends before it kills a job) save a
checkpoint first. A non-finite loss, gradient or weight stops the run naming the step; nothing
non-finite is ever written, so the checkpoint on disk is the last finite one.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from . import distributed
from .checks import L2VError, NonFiniteError, first_non_finite, hold_signals
from .files import atomic_folder, recover_folder, write_atomic
from .lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_state, lora_modules, read_adapter, write_adapter
from .precision import warn_fp16_under_bf16_autocast
from .settings import TrainSettings

CHECKPOINT_DIR, STATE_FILE, LOG_FILE = "checkpoint", "trainer_state.pt", "log.jsonl"


class Stage(NamedTuple):
    """A step file's own part of a training run (mntp.py, simcse.py, supervised.py)."""

    batch: Callable  # batch(step, micro) -> a micro-batch, deterministic in (step, micro): resuming is exact
    loss: Callable  # loss(model, batch) -> (loss, {metric: value}); a "tokens" metric becomes tokens/s
    evaluate: Callable | None = None  # evaluate(model) -> {metric: value}


class NonFiniteLossError(NonFiniteError):
    pass


class Preempted(KeyboardInterrupt):
    """SIGTERM, handled exactly as Ctrl-C: a checkpoint is saved, then the run stops."""


RUN_FILES = (LOG_FILE, CHECKPOINT_DIR, ADAPTER_WEIGHTS, ADAPTER_CONFIG)  # what marks a folder as a run's


def check_out_dir(out_dir, resume: bool = False, overwrite: bool = False):
    """Refuse to write over an earlier run unless asked (--resume continues it, --overwrite replaces
    it), and refuse a checkpoint folder holding files l2v did not write (they would be deleted)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise L2VError(f"--out {out} is a file, not a folder")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not resume and not overwrite:
        raise L2VError(f"{out} already holds a run ({', '.join(found)}); pass --resume to continue it or "
                       f"--overwrite to replace it")
    ckpt = out / CHECKPOINT_DIR
    if ckpt.is_dir():
        foreign = sorted(p.name for p in ckpt.iterdir() if p.name not in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, STATE_FILE))
        if foreign:
            raise L2VError(f"{ckpt} holds {', '.join(foreign)}, which l2v did not write; move it away first")


class EpochSampler:
    """Which items form micro-batch (step, micro): an endless stream of epochs, each a fresh
    permutation seeded by (seed, epoch). A pure function of its arguments, so resuming at a step
    needs no saved data position."""

    def __init__(self, n_items: int, batch_size: int, grad_accum: int = 1, seed: int = 0):
        self.n, self.batch_size, self.grad_accum, self.seed = n_items, batch_size, grad_accum, seed
        self._epoch, self._order = None, None

    def indices(self, step: int, micro: int) -> list[int]:
        k = step * self.grad_accum + micro  # global micro-batch number
        return [self._order_of(p // self.n)[p % self.n] for p in range(k * self.batch_size, (k + 1) * self.batch_size)]

    def micro_seed(self, step: int, micro: int) -> int:
        """A seed of this micro-batch's own, e.g. for MNTP's masks."""
        return self.seed * 1_000_003 + step * self.grad_accum + micro

    def _order_of(self, epoch: int) -> list[int]:
        if self._epoch != epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.n, generator=g).tolist()
        return self._order


def lr_factor(step: int, s: TrainSettings) -> float:
    """Multiplier of s.lr at optimizer step `step` (0-based)."""
    if step < s.warmup_steps:
        return (step + 1) / s.warmup_steps
    return max(0.0, (s.steps - step) / max(1, s.steps - s.warmup_steps))


def train(model, stage: Stage, settings: TrainSettings, out_dir, *, name: str = "train", inputs: dict | None = None,
          resume: bool = False, overwrite: bool = False) -> list[dict]:
    """Train the model's trainable parameters; write the final adapter into out_dir. → log records.
    name: the bar's and the summary's label; inputs: what the run was made from (data, base model,
    merged adapter), recorded in the checkpoint and checked on resume like the settings."""
    out, inputs = Path(out_dir), inputs or {}
    check_out_dir(out, resume, overwrite)
    _check_lora(model, settings)
    out.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (apply LoRA first)")
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, settings))
    autocast = device.type == "cuda" if settings.autocast is None else settings.autocast
    if autocast:
        warn_fp16_under_bf16_autocast(model, name)
    layers = model.config.num_hidden_layers
    if settings.checkpoint_layers is not None and settings.checkpoint_layers > layers:
        raise ValueError(f"--checkpoint-layers {settings.checkpoint_layers}: the model has {layers} blocks")
    ckpt = settings.checkpoint_layers
    model.gradient_checkpointing = settings.gradient_checkpointing if ckpt is None else ckpt

    start = 0
    recover_folder(out / CHECKPOINT_DIR)  # a swap cut short by a hard kill
    if resume and (out / CHECKPOINT_DIR / STATE_FILE).is_file():
        start = _load_checkpoint(out / CHECKPOINT_DIR, model, optimizer, scheduler, settings, inputs)
        print(f"{name}: resumed from step {start}")
    else:
        if resume:
            print(f"{name}: no checkpoint in {out / CHECKPOINT_DIR}; starting at step 0")
        torch.manual_seed(settings.seed)
        random.seed(settings.seed)
    main = distributed.is_main()  # with torchrun, one process logs and writes checkpoints
    records = _read_log(out / LOG_FILE, keep_through=start) if start else []
    if main:
        _write_log(out / LOG_FILE, records)
    log = open(out / LOG_FILE, "a") if main else None

    def emit(record):
        records.append(record)
        if log is not None:
            log.write(json.dumps(record) + "\n")
            log.flush()

    if stage.evaluate is not None and start == 0:
        emit({"step": 0, "eval": stage.evaluate(model)})
    t_start = time.perf_counter()
    step = applied = last_saved = start  # applied: optimizer steps in the weights now
    running = None  # an average of recent losses, to notice a blow-up before it turns into NaN
    bar = tqdm(range(start, settings.steps), initial=start, total=settings.steps, desc=name, unit="step",
               disable=not main)
    rng = rng_after = _rng_state()
    on_term = _raise_on_sigterm()
    try:
        for step in bar:
            model.train()
            rng = _rng_state()  # if this step is interrupted, a resume must redo it with the same randomness
            t0, loss_sum, metrics_sum = time.perf_counter(), 0.0, {}
            for micro in range(settings.grad_accum):
                batch = stage.batch(step, micro)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss, metrics = stage.loss(model, batch)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"{name}: loss is {loss.item()} at step {step + 1}; stopped. " + _last_good(out, last_saved))
                (loss / settings.grad_accum).backward()
                loss_sum += loss.item() / settings.grad_accum
                for k, v in metrics.items():
                    metrics_sum[k] = metrics_sum.get(k, 0) + v
            distributed.average_gradients(params)  # several processes: the mean of their gradients
            if not _all_finite([p.grad for p in params if p.grad is not None]):
                bad = first_non_finite((n, p.grad) for n, p in model.named_parameters() if p.grad is not None)
                raise NonFiniteError(f"{name}: the gradient of {bad} is NaN or inf at step {step + 1}; stopped "
                                     f"before the update. " + _last_good(out, last_saved))
            if settings.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            with hold_signals():  # the update and its bookkeeping happen together, or not at all
                optimizer.step()
                scheduler.step()
                applied, rng_after = step + 1, _rng_state()
            optimizer.zero_grad(set_to_none=True)
            if not _all_finite(params):  # a huge lr can overflow the weights while the loss still looked fine
                bad = first_non_finite((n, p) for n, p in model.named_parameters() if p.requires_grad)
                raise NonFiniteError(f"{name}: weight {bad} became NaN or inf at step {step + 1}; stopped, the "
                                     f"adapter was not written. " + _last_good(out, last_saved))
            if running is not None and loss_sum > 2 * running and loss_sum > running + 1:  # SmolLM2, lr 1e6: 7.3 → 36
                warnings.warn(f"{name}: loss {loss_sum:.4f} at step {step + 1} is far above its running value "
                              f"{running:.4f} (lower the learning rate?)", stacklevel=2)
            running = loss_sum if running is None else 0.9 * running + 0.1 * loss_sum
            seconds = time.perf_counter() - t0
            record = {"step": step + 1, "loss": loss_sum, "lr": lr, "seconds": round(seconds, 4)}
            if "tokens" in metrics_sum:
                record["tokens_per_s"] = round(metrics_sum.pop("tokens") / seconds, 1)
            record.update({k: v / settings.grad_accum for k, v in metrics_sum.items()})
            emit(record)
            bar.set_postfix(loss=f"{loss_sum:.4f}", lr=f"{lr:.2e}")
            done = step + 1
            last = done == settings.steps
            if stage.evaluate is not None and (last or (settings.eval_every and done % settings.eval_every == 0)):
                emit({"step": done, "eval": stage.evaluate(model)})
            if main and (last or (settings.save_every and done % settings.save_every == 0)):
                _save_checkpoint(out / CHECKPOINT_DIR, model, optimizer, scheduler, done, settings, _rng_state(),
                                 inputs)
                last_saved = done
    except KeyboardInterrupt:
        optimizer.zero_grad(set_to_none=True)  # a half-accumulated step is dropped
        # Interrupted after the update (during the log, an eval or a save): the weights already
        # hold step `applied`, so that is the step saved, with the randomness right after it;
        # saving `step` would make the resume apply it a second time.
        at, state = (applied, rng_after) if applied > step else (step, rng)
        if main:
            _save_checkpoint(out / CHECKPOINT_DIR, model, optimizer, scheduler, at, settings, state, inputs)
            why = "stopped by SIGTERM" if isinstance(sys.exc_info()[1], Preempted) else "interrupted"
            print(f"\n{name}: {why}; checkpoint at step {at} saved in {out / CHECKPOINT_DIR} (use --resume)")
        raise
    finally:
        on_term()
        bar.close()
        if log is not None:
            log.close()
        model.gradient_checkpointing = False
    if main:
        _publish_adapter(out, out / CHECKPOINT_DIR)
        _print_summary(name, records, time.perf_counter() - t_start, out)
    return records


def _rng_state() -> dict:
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python_rng": random.getstate()}


def _raise_on_sigterm():
    """Turn SIGTERM into Preempted (a KeyboardInterrupt) while training. → a function undoing it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers can only be set from the main thread

    def handler(signum, frame):
        raise Preempted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _all_finite(tensors) -> bool:
    """One check (one device sync) over many tensors."""
    tensors = [t for t in tensors if t.is_floating_point()]
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _last_good(out: Path, last_saved: int) -> str:
    if last_saved and (out / CHECKPOINT_DIR / STATE_FILE).is_file():
        return (f"The last finite checkpoint (step {last_saved}) is in {out / CHECKPOINT_DIR}; lower the learning "
                f"rate, or check the data.")
    return "No checkpoint was written; lower the learning rate, or check the data."


def _save_checkpoint(folder: Path, model, optimizer, scheduler, step: int, settings: TrainSettings, rng, inputs: dict):
    bad = first_non_finite(adapter_state(model).items())
    if bad:  # never replace a finite checkpoint with a broken one
        raise NonFiniteError(f"not saving the checkpoint at step {step}: {bad} holds NaN or inf values")
    with atomic_folder(folder) as tmp:
        write_adapter(tmp, model, inputs.get("base_model"))
        torch.save({
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            **rng,
            "config": asdict(settings),
            "inputs": inputs,
        }, tmp / STATE_FILE)


def _load_checkpoint(folder: Path, model, optimizer, scheduler, settings: TrainSettings | None = None,
                     inputs: dict | None = None) -> int:
    device = next(model.parameters()).device  # not where the saving process had it (GPU 0 for rank 0)
    try:  # our own file; weights_only: no code runs
        state = torch.load(folder / STATE_FILE, weights_only=True, map_location=device)
    except Exception as e:  # truncated or not ours: torch's errors do not name the file
        raise L2VError(f"{folder / STATE_FILE}: cannot be read ({str(e).splitlines()[0]}); "
                       f"start afresh with --overwrite") from None
    if settings is not None:
        _check_same_settings(folder, state, settings, inputs or {})
    _, tensors = read_adapter(folder)
    with torch.no_grad():
        for path, m in lora_modules(model).items():
            for which in ("lora_A", "lora_B"):
                value, param = tensors.get(path, {}).get(which), getattr(m, which).weight
                if value is None or value.shape != param.shape:
                    raise L2VError(f"{folder} does not fit this model: {path}.{which} is "
                                   f"{None if value is None else tuple(value.shape)}, the model's {tuple(param.shape)}")
                param.copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"].cpu())  # RNG states are CPU byte tensors wherever the model is
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    random.setstate(_as_tuple(state["python_rng"]))
    return int(state["step"])


def _check_same_settings(folder: Path, state: dict, settings: TrainSettings, inputs: dict):
    """--resume continues the run in the checkpoint; other settings would silently not apply (the
    optimizer and schedule come from the checkpoint), so a difference is an error that names it."""
    may_change = {f.name for f in fields(settings) if f.metadata.get("resume_may_change")}
    saved, now = _saved_settings(state), {**asdict(settings), **inputs}
    differ = [f"{k}: checkpoint {saved[k]!r}, now {now[k]!r}" for k in now
              if k in saved and k not in may_change and saved[k] != now[k]]
    if differ:
        raise L2VError(f"--resume: settings differ from the checkpoint in {folder} ({'; '.join(differ)}); "
                       f"use the run's settings, or start afresh with --overwrite")


def _saved_settings(state: dict) -> dict:
    """What a checkpoint was made with, under today's names: checkpoints written before settings.py
    kept some settings beside the loop's (`settings`), as autocast_bf16, dropout, PEFT's LoRA names."""
    saved = {**state.get("config", {}), **state.get("settings", {}), **state.get("inputs", {})}
    renamed = {"autocast_bf16": "autocast", "dropout": "attention_dropout"}
    saved = {renamed.get(k, k): v for k, v in saved.items()}
    lora = saved.get("lora")
    if isinstance(lora, dict) and "lora_alpha" in lora:
        saved["lora"] = dict(r=lora["r"], alpha=lora["lora_alpha"], dropout=lora["lora_dropout"])
    return saved


def _check_lora(model, settings: TrainSettings):
    """settings.lora is what the checkpoint records: it must be the LoRA the model carries."""
    applied = getattr(model, "lora_config", None)
    if applied is None:
        return  # no LoRA: train() then finds no trainable parameters and says so
    wanted = settings.lora
    if (applied["r"], applied["lora_alpha"], applied["lora_dropout"]) != (wanted.r, wanted.alpha, wanted.dropout):
        raise L2VError(f"the model carries LoRA r={applied['r']}, alpha={applied['lora_alpha']}, dropout="
                       f"{applied['lora_dropout']}, but settings.lora is {wanted}; apply_lora with settings.lora")


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _publish_adapter(out: Path, checkpoint: Path):
    """The final adapter, next to the log, where `--adapter OUT_DIR` finds it (file by file, atomically)."""
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        write_atomic(out / name, (checkpoint / name).read_bytes())


def _read_log(path: Path, keep_through: int) -> list[dict]:
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


def _write_log(path: Path, records: list[dict]):
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def _print_summary(name: str, records: list[dict], seconds: float, out: Path):
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
