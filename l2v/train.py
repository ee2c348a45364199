"""The training loop every LLM2Vec stage runs (MNTP, SimCSE, supervised), nanoGPT style, and the
model it trains. A stage's run (mntp.py, simcse.py, supervised.py) is a few plain steps:

    run = RunFolder(out, resume, overwrite)        the output folder, checked before minutes of loading
    data = read_...(source)                        the stage's data, and its errors
    distributed.init()                             with torchrun: one process per GPU
    model = prepare_model(model_dir, ...)          bidirectional (step 1), the MNTP adapter merged, a fresh LoRA
    train(model, Stage(batch, loss, evaluate), settings, run)

`Stage` is what is the stage's own:

    batch(step, micro) -> batch          deterministic in (step, micro), so "where the data was"
                                         is just the step number and resuming is exact
    loss(model, batch) -> (loss, metrics)
    evaluate(model) -> metrics           optional: at the start, every eval_every steps, at the end

`Pieces` are the paper's functions a run is built from — the attention mask, the LoRA layer, the
pooling, the losses. l2v's own unless a run is handed others (a course's capstone hands in the
students'); each is called where l2v's would be, with the same arguments.

The loop: AdamW over the trainable (LoRA) parameters, linear warmup then linear decay, gradient
accumulation, gradient clipping, bf16 autocast (on CUDA, and on CPU when asked), a tqdm bar,
log.jsonl, an eval every N steps, and atomic checkpoints that `--resume` continues exactly
(runtime/checkpoints.py). Ctrl-C and SIGTERM (what a cluster sends before it kills a job) save a
checkpoint first. A non-finite loss, gradient or weight stops the run naming the step; nothing
non-finite is ever written, so the checkpoint on disk is the last finite one.
"""

from __future__ import annotations

import random
import signal
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from .formats.loading import load_model
from .formats.peft import merge_adapters
from .lora import apply_lora, trainable_summary
from .runtime import checkpoints, distributed
from .runtime.checkpoints import LOG_FILE, Log, RunFolder, print_summary, rng_state
from .runtime.checks import L2VError, NonFiniteError, first_non_finite, hold_signals
from .runtime.precision import warn_fp16_under_bf16_autocast
from .settings import LoRASettings, TrainSettings


class Stage(NamedTuple):
    """A step file's own part of a training run (mntp.py, simcse.py, supervised.py)."""

    batch: Callable  # batch(step, micro) -> a micro-batch, deterministic in (step, micro): resuming is exact
    loss: Callable  # loss(model, batch) -> (loss, {metric: value}); a "tokens" metric becomes tokens/s
    evaluate: Callable | None = None  # evaluate(model) -> {metric: value}
    group: Callable | None = None  # group(step) -> which data the step draws from: its loss is watched against
    # that data's running value, not the mix's (the supervised step's datasets differ in how hard they are)


@dataclass(frozen=True)
class Pieces:
    """The paper's functions a training run is built from; None is l2v's own (right). Hand a run
    yours — run_mntp(..., pieces=Pieces(mntp_loss=my_loss)) — and it is called instead, always; a
    piece the stage does not call is refused, not ignored:

        attention_mask(padding_mask (B, T), causal, sliding_window=None) -> (B, 1, T, T) bool
                                                                                     model.build_attention_mask
        lora_layer(base: nn.Linear, r, alpha, dropout) -> module with lora_A, lora_B  lora.FastLoRALinear
        pool(hidden (B, T, D), pool_mask (B, T)) -> (B, D)                           pooling.mean_pool
        mntp_loss(model, input_ids, labels) -> (loss, accuracy)                      mntp.mntp_loss
        contrastive_loss(anchors, positives, negatives=None, scale=20.0) -> loss      contrastive.contrastive_loss
    """

    attention_mask: Callable | None = None  # every stage: the model's mask, every batch (also unpadded ones)
    lora_layer: Callable | None = None  # every stage: wraps each projection LoRA trains; saved in PEFT's format
    pool: Callable | None = None  # SimCSE, supervised: the embedding of a text
    mntp_loss: Callable | None = None  # MNTP
    contrastive_loss: Callable | None = None  # SimCSE (two views), supervised (with hard negatives)

    def check(self, stage: str, uses: tuple[str, ...]):
        """Refuse a piece `stage` does not call: it would be silently ignored, and l2v's own run instead."""
        unused = [f.name for f in fields(self) if getattr(self, f.name) is not None and f.name not in uses]
        if unused:
            raise L2VError(f"the {stage} stage does not call Pieces.{', Pieces.'.join(unused)} (it calls "
                           f"{', '.join(uses)})")
        return self


class NonFiniteLossError(NonFiniteError):
    pass


class Preempted(KeyboardInterrupt):
    """SIGTERM, handled exactly as Ctrl-C: a checkpoint is saved, then the run stops."""


def prepare_model(model_dir, lora: LoRASettings, seed: int, *, adapter=None, attention_dropout: float | None = None,
                  device=None, dtype=None, fast: bool = True, pieces: Pieces | None = None):
    """Load the model bidirectional (LLM2Vec step 1), merge `adapter` into it (SimCSE and supervised
    start from base + MNTP, as the official recipe), set the attention dropout (SimCSE's two views),
    and wrap it with a fresh LoRA seeded by `seed`, the only parameters that train. fast: the
    memory-lean LoRA layer (lora.FastLoRALinear), tested equal to the plain one; fast=False gives
    the plain LoRALinear. pieces: a mask function and a LoRA layer of your own (Pieces)."""
    if adapter is not None and not Path(adapter).is_dir():
        raise FileNotFoundError(f"MNTP adapter folder not found: {adapter} (train one with `l2v mntp`)")
    model = load_model(model_dir, dtype=dtype, device=device, causal=False)
    if adapter is not None:
        merge_adapters(model, [adapter])
    if attention_dropout is not None:
        model.set_attention_dropout(attention_dropout)
    pieces = pieces or Pieces()
    if pieces.attention_mask is not None:
        model.build_mask = pieces.attention_mask
    torch.manual_seed(seed)  # the fresh LoRA's A matrices
    apply_lora(model, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, fast=fast, layer=pieces.lora_layer)
    print(f"{trainable_summary(model)} on {model.lm_head.weight.device}")
    return model


@contextmanager
def mode(model, training: bool):
    """The model in training (dropout on) or eval mode for a while, then back as it was: a stage's
    evaluation runs in the middle of training."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def lr_factor(step: int, s: TrainSettings) -> float:
    """Multiplier of s.lr at optimizer step `step` (0-based)."""
    if step < s.warmup_steps:
        return (step + 1) / s.warmup_steps
    return max(0.0, (s.steps - step) / max(1, s.steps - s.warmup_steps))


def train(model, stage: Stage, settings: TrainSettings, out_dir, *, name: str = "train", inputs: dict | None = None,
          resume: bool = False, overwrite: bool = False) -> list[dict]:
    """Train the model's trainable parameters; the final adapter lands in out_dir. → the log records.
    out_dir: a RunFolder, or a folder checked here (with resume and overwrite); name: the bar's and
    the summary's label; inputs: what the run was made from (data, base model, merged adapter),
    recorded in the checkpoint and checked on resume like the settings."""
    if isinstance(out_dir, RunFolder) and (resume or overwrite):
        raise ValueError("train(): resume and overwrite belong to the RunFolder given as out_dir")
    run = out_dir if isinstance(out_dir, RunFolder) else RunFolder(out_dir, resume, overwrite)
    inputs = inputs or {}
    params = _trainable(model, settings)
    run.path.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, settings))
    device, autocast = next(model.parameters()).device, _autocast(model, settings, name)
    start = _start(run, model, optimizer, scheduler, settings, inputs, name)
    main = distributed.is_main()  # with torchrun, one process logs and writes checkpoints
    log = Log(run.path / LOG_FILE, keep_through=start, write=main)
    if stage.evaluate is not None and start == 0:
        log({"step": 0, "eval": stage.evaluate(model)})
    at, t_start, running = _Progress(start), time.perf_counter(), {}  # group → running loss
    bar = tqdm(range(start, settings.steps), initial=start, total=settings.steps, desc=name, unit="step",
               disable=not main)
    restore_sigterm = _raise_on_sigterm()
    try:
        for step in bar:
            model.train()
            at.step, at.rng = step, rng_state()  # if this step is interrupted, a resume redoes it with this randomness
            t0, loss_sum, metrics = time.perf_counter(), 0.0, {}
            for micro in range(settings.grad_accum):  # forward and backward, one micro-batch at a time
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss, micro_metrics = stage.loss(model, stage.batch(step, micro))
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"{name}: loss is {loss.item()} at step {step + 1}; stopped. "
                                             + run.last_good(at.saved))
                (loss / settings.grad_accum).backward()
                loss_sum += loss.item() / settings.grad_accum
                for k, v in micro_metrics.items():
                    metrics[k] = metrics.get(k, 0) + v
            distributed.average_gradients(params)  # several processes: the mean of their gradients
            _check_finite(model, params, "gradient", step, name, run, at.saved)
            if settings.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            with hold_signals():  # the update and its bookkeeping happen together, or not at all
                optimizer.step()
                scheduler.step()
                at.applied, at.rng_after = step + 1, rng_state()
            optimizer.zero_grad(set_to_none=True)
            _check_finite(model, params, "weight", step, name, run, at.saved)
            group = stage.group(step) if stage.group else None
            running[group] = _watch_loss(loss_sum, running.get(group), step, f"{name} ({group})" if group else name)
            log(_record(step, loss_sum, lr, metrics, time.perf_counter() - t0, settings.grad_accum))
            bar.set_postfix(loss=f"{loss_sum:.4f}", lr=f"{lr:.2e}")
            done = step + 1
            if stage.evaluate is not None and _due(done, settings.eval_every, settings.steps):
                log({"step": done, "eval": stage.evaluate(model)})
            if main and _due(done, settings.save_every, settings.steps):
                checkpoints.save_checkpoint(run.checkpoint, model, optimizer, scheduler, done, settings, rng_state(),
                                            inputs)
                at.saved = done
    except KeyboardInterrupt as e:
        optimizer.zero_grad(set_to_none=True)  # a half-accumulated step is dropped
        if main:
            why = "stopped by SIGTERM" if isinstance(e, Preempted) else "interrupted"
            _save_interrupted(run, at, f"{name}: {why}", model, optimizer, scheduler, settings, inputs)
        raise
    finally:
        restore_sigterm()
        bar.close()
        log.close()
        model.gradient_checkpointing = False
    if main:
        run.publish_adapter()
        print_summary(name, log.records, time.perf_counter() - t_start, run.path)
    return log.records


# ---------------------------------------------------------------- the loop's helpers


class _Progress:
    """Where a run stands: what an interrupt saves, where an error says the last finite state is."""

    def __init__(self, start: int):
        self.step = self.applied = self.saved = start  # the step running, optimizer steps in the weights, last saved
        self.rng = self.rng_after = rng_state()  # RNG states at the start of `step`, and right after the last update


def _trainable(model, settings: TrainSettings) -> list:
    """The parameters that train, after two checks — settings.lora is the LoRA the model carries (it
    is what the checkpoint records), checkpoint_layers fits the model — and gradient checkpointing
    switched on as the settings ask."""
    applied = getattr(model, "lora_config", None)
    wanted = settings.lora
    if applied is not None and (applied["r"], applied["lora_alpha"], applied["lora_dropout"]) != (
            wanted.r, wanted.alpha, wanted.dropout):
        raise L2VError(f"the model carries LoRA r={applied['r']}, alpha={applied['lora_alpha']}, dropout="
                       f"{applied['lora_dropout']}, but settings.lora is {wanted}; apply_lora with settings.lora")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (apply LoRA first)")
    layers, ckpt = model.config.num_hidden_layers, settings.checkpoint_layers
    if ckpt is not None and ckpt > layers:
        raise ValueError(f"--checkpoint-layers {ckpt}: the model has {layers} blocks")
    model.gradient_checkpointing = settings.gradient_checkpointing if ckpt is None else ckpt
    return params


def _autocast(model, settings: TrainSettings, name: str) -> bool:
    """bf16 autocast: as the settings say, else on for CUDA and off for a CPU."""
    autocast = next(model.parameters()).device.type == "cuda" if settings.autocast is None else settings.autocast
    if autocast:
        warn_fp16_under_bf16_autocast(model, name)
    return autocast


def _start(run: RunFolder, model, optimizer, scheduler, settings, inputs: dict, name: str) -> int:
    """The step to start at: the checkpoint's when resuming from one, else 0 with the run's seed set."""
    found = run.recover_checkpoint()
    if run.resume and found:
        start = checkpoints.load_checkpoint(run.checkpoint, model, optimizer, scheduler, settings, inputs)
        print(f"{name}: resumed from step {start}")
        return start
    if run.resume:
        print(f"{name}: no checkpoint in {run.checkpoint}; starting at step 0")
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    return 0


def _check_finite(model, params, what: str, step: int, name: str, run: RunFolder, saved: int):
    """Stop, naming the tensor, when a gradient (before the update) or a weight (after it) is NaN or inf;
    a huge lr can overflow the weights while the loss still looked fine. One device sync for all."""
    tensors = [p.grad if what == "gradient" else p for p in params]
    tensors = [t for t in tensors if t is not None and t.is_floating_point()]
    if not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
        return
    if what == "gradient":
        bad = first_non_finite((n, p.grad) for n, p in model.named_parameters() if p.grad is not None)
        raise NonFiniteError(f"{name}: the gradient of {bad} is NaN or inf at step {step + 1}; stopped before the "
                             f"update. " + run.last_good(saved))
    bad = first_non_finite((n, p) for n, p in model.named_parameters() if p.requires_grad)
    raise NonFiniteError(f"{name}: weight {bad} became NaN or inf at step {step + 1}; stopped, the adapter was not "
                         f"written. " + run.last_good(saved))


def _watch_loss(loss: float, running: float | None, step: int, name: str) -> float:
    """A running average of the loss, and a warning when a step's is far above it: a blow-up shows
    here before it turns into NaN."""
    if running is not None and loss > 2 * running and loss > running + 1:
        warnings.warn(f"{name}: loss {loss:.4f} at step {step + 1} is far above its running value "
                      f"{running:.4f} (lower the learning rate?)", stacklevel=3)
    return loss if running is None else 0.9 * running + 0.1 * loss


def _record(step: int, loss: float, lr: float, metrics: dict, seconds: float, grad_accum: int) -> dict:
    """A step's log record: the loss, lr and time; the metrics averaged over its micro-batches."""
    record = {"step": step + 1, "loss": loss, "lr": lr, "seconds": round(seconds, 4)}
    if "tokens" in metrics:
        record["tokens_per_s"] = round(metrics.pop("tokens") / seconds, 1)
    record.update({k: v / grad_accum for k, v in metrics.items()})
    return record


def _due(done: int, every: int, steps: int) -> bool:
    return done == steps or bool(every and done % every == 0)


def _save_interrupted(run: RunFolder, at: _Progress, said: str, model, optimizer, scheduler, settings, inputs):
    """Ctrl-C or SIGTERM. Interrupted after the update (during the log, an eval or a save), the weights
    already hold step `applied`, so that is the step saved, with the randomness right after it;
    saving `step` would make the resume apply it a second time."""
    step, state = (at.applied, at.rng_after) if at.applied > at.step else (at.step, at.rng)
    checkpoints.save_checkpoint(run.checkpoint, model, optimizer, scheduler, step, settings, state, inputs)
    print(f"\n{said}; checkpoint at step {step} saved in {run.checkpoint} (use --resume)")


def _raise_on_sigterm():
    """Turn SIGTERM into Preempted (a KeyboardInterrupt) while training. → a function undoing it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers can only be set from the main thread

    def handler(signum, frame):
        raise Preempted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)
