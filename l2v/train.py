"""One small training loop for every LLM2Vec stage (MNTP, SimCSE, supervised), nanoGPT style.

A stage supplies two functions and the loop does the rest:

    batch_fn(step, micro) -> batch        deterministic in (step, micro), so "where the data was"
                                          is just the step number and resuming is exact
    loss_fn(model, batch) -> (loss, metrics)

The loop: AdamW over the trainable (LoRA) parameters, linear warmup then linear decay, gradient
accumulation, gradient clipping, bf16 autocast on CUDA, a tqdm bar, `log.jsonl`, an eval every N
steps, and atomic checkpoints (adapter + optimizer + scheduler + RNG states + step) that `resume`
continues exactly. Ctrl-C saves a checkpoint first; a non-finite loss stops without overwriting
the last good one.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed
from .loading import atomic_folder
from .lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, lora_modules, read_adapter, write_adapter
from .precision import warn_fp16_under_bf16_autocast

CHECKPOINT_DIR, STATE_FILE, LOG_FILE = "checkpoint", "trainer_state.pt", "log.jsonl"


@dataclass
class TrainConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step (effective batch = batch_size × grad_accum)
    lr: float = 5e-5  # peak learning rate
    warmup_steps: int = 0  # linear warmup from 0 to lr, then linear decay to 0 at `steps`
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # gradient clipping (0 disables)
    eval_every: int = 0  # steps between evaluations (0: only at the start and the end)
    save_every: int = 100  # steps between checkpoints (0: only at the end)
    seed: int = 42
    autocast_bf16: bool | None = None  # None: on for CUDA, off for CPU
    gradient_checkpointing: bool = False


class NonFiniteLossError(RuntimeError):
    pass


def resolve_settings(presets: dict, preset: str, **overrides) -> tuple[TrainConfig, dict]:
    """A stage's preset, overridden by what the caller gave (None keeps the preset's value).
    → (the loop's TrainConfig, the stage's own remaining settings such as max_length)."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(presets)}")
    settings = dict(presets[preset])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    loop_keys = set(TrainConfig.__dataclass_fields__)
    cfg = TrainConfig(**{k: v for k, v in settings.items() if k in loop_keys})
    return cfg, {k: v for k, v in settings.items() if k not in loop_keys}


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


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr at optimizer step `step` (0-based)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return max(0.0, (cfg.steps - step) / max(1, cfg.steps - cfg.warmup_steps))


def train(model, *, loss_fn: Callable, batch_fn: Callable, cfg: TrainConfig, out_dir,
          eval_fn: Callable | None = None, resume: bool = False, desc: str = "train",
          base_model: str | None = None) -> list[dict]:
    """Train the model's trainable parameters; write the final adapter into out_dir. → log records."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (apply LoRA first)")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    use_bf16 = device.type == "cuda" if cfg.autocast_bf16 is None else cfg.autocast_bf16
    if use_bf16:
        warn_fp16_under_bf16_autocast(model, desc)
    model.gradient_checkpointing = cfg.gradient_checkpointing

    start = 0
    if resume and (out / CHECKPOINT_DIR / STATE_FILE).is_file():
        start = _load_checkpoint(out / CHECKPOINT_DIR, model, optimizer, scheduler)
        print(f"{desc}: resumed from step {start}")
    else:
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
    main = distributed.is_main()  # with torchrun, one process logs and writes checkpoints
    records = _read_log(out / LOG_FILE, keep_through=start) if resume else []
    if main:
        _write_log(out / LOG_FILE, records)
    log = open(out / LOG_FILE, "a") if main else None

    def emit(record):
        records.append(record)
        if log is not None:
            log.write(json.dumps(record) + "\n")
            log.flush()

    if eval_fn is not None and start == 0:
        emit({"step": 0, "eval": eval_fn(model)})
    t_start = time.perf_counter()
    step = start
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc, unit="step", disable=not main)
    try:
        for step in bar:
            model.train()
            rng = _rng_state()  # if this step is interrupted, a resume must redo it with the same randomness
            t0, loss_sum, metrics_sum = time.perf_counter(), 0.0, {}
            for micro in range(cfg.grad_accum):
                batch = batch_fn(step, micro)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    loss, metrics = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"{desc}: loss is {loss.item()} at step {step + 1}; stopped. The last good checkpoint "
                        f"is in {out / CHECKPOINT_DIR} (lower the learning rate, or check the data).")
                (loss / cfg.grad_accum).backward()
                loss_sum += loss.item() / cfg.grad_accum
                for k, v in metrics.items():
                    metrics_sum[k] = metrics_sum.get(k, 0) + v
            distributed.average_gradients(params)  # several processes: the mean of their gradients
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - t0
            record = {"step": step + 1, "loss": loss_sum, "lr": lr, "seconds": round(seconds, 4)}
            if "tokens" in metrics_sum:
                record["tokens_per_s"] = round(metrics_sum.pop("tokens") / seconds, 1)
            record.update({k: v / cfg.grad_accum for k, v in metrics_sum.items()})
            emit(record)
            bar.set_postfix(loss=f"{loss_sum:.4f}", lr=f"{lr:.2e}")
            done = step + 1
            if eval_fn is not None and (done == cfg.steps or (cfg.eval_every and done % cfg.eval_every == 0)):
                emit({"step": done, "eval": eval_fn(model)})
            if main and (done == cfg.steps or (cfg.save_every and done % cfg.save_every == 0)):
                _save_checkpoint(out / CHECKPOINT_DIR, model, optimizer, scheduler, done, cfg, base_model, _rng_state())
    except KeyboardInterrupt:
        optimizer.zero_grad(set_to_none=True)  # a half-accumulated step is dropped
        if main:
            _save_checkpoint(out / CHECKPOINT_DIR, model, optimizer, scheduler, step, cfg, base_model, rng)
            print(f"\n{desc}: interrupted; checkpoint at step {step} saved in {out / CHECKPOINT_DIR} (use --resume)")
        raise
    finally:
        bar.close()
        if log is not None:
            log.close()
        model.gradient_checkpointing = False
    if main:
        _publish_adapter(out, out / CHECKPOINT_DIR)
        _print_summary(desc, records, time.perf_counter() - t_start, out)
    return records


def _rng_state() -> dict:
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python_rng": random.getstate()}


def _save_checkpoint(folder: Path, model, optimizer, scheduler, step: int, cfg: TrainConfig, base_model, rng):
    with atomic_folder(folder) as tmp:
        write_adapter(tmp, model, base_model)
        torch.save({
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            **rng,
            "config": asdict(cfg),
        }, tmp / STATE_FILE)


def _load_checkpoint(folder: Path, model, optimizer, scheduler) -> int:
    _, tensors = read_adapter(folder)
    with torch.no_grad():
        for path, m in lora_modules(model).items():
            m.lora_A.weight.copy_(tensors[path]["lora_A"])
            m.lora_B.weight.copy_(tensors[path]["lora_B"])
    device = next(model.parameters()).device  # not where the saving process had it (GPU 0 for rank 0)
    state = torch.load(folder / STATE_FILE, weights_only=True, map_location=device)  # weights_only: no code runs
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"].cpu())  # RNG states are CPU byte tensors wherever the model is
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    random.setstate(_as_tuple(state["python_rng"]))
    return int(state["step"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _publish_adapter(out: Path, checkpoint: Path):
    """The final adapter, next to the log, where `--adapter OUT_DIR` finds it (file by file, atomically)."""
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        tmp = out / f".{name}.tmp"
        tmp.write_bytes((checkpoint / name).read_bytes())
        os.replace(tmp, out / name)


def _read_log(path: Path, keep_through: int) -> list[dict]:
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["step"] <= keep_through]  # steps after the checkpoint are redone


def _write_log(path: Path, records: list[dict]):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)


def _print_summary(desc: str, records: list[dict], seconds: float, out: Path):
    losses = [r["loss"] for r in records if "loss" in r]
    evals = [r for r in records if "eval" in r]
    if not losses:
        return
    k = max(1, len(losses) // 10)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    lines = [f"{desc}: {len(losses)} steps in {seconds / 60:.1f} min; loss {first:.4f} → {last:.4f} "
             f"(mean of first/last {k})"]
    if len(evals) >= 2:
        a, b = evals[0]["eval"], evals[-1]["eval"]
        lines.append("  eval " + ", ".join(f"{key} {a[key]:.4f} → {b[key]:.4f}" for key in a if key in b))
    lines.append(f"  adapter and log.jsonl in {out}")
    print("\n".join(lines))
