"""What every training stage shares: the contract a step file fills in, and the one prologue.

A step file (mntp.py, simcse.py, supervised.py) says only what is its own — its data, its loss,
its evaluation: a `read()` function for the data and a `setup(model, tokenizer, data)` function
that returns a `train.Stage`. `run_stage` does the rest, the same way for all three:

    check the output folder         before minutes of loading, not after
    read the data                   its errors too
    distributed init                with torchrun, one process per GPU
    load the model, bidirectional   LLM2Vec step 1: every stage trains the model without its causal mask
    merge the earlier adapter       SimCSE and supervised start from base + MNTP, as the official recipe
    attention dropout               SimCSE's source of two views
    a fresh LoRA                    the only parameters that train
    setup → train → publish         train.py's loop; the adapter lands in OUT in PEFT's format
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from . import distributed
from .loading import load_model
from .lora import apply_lora, merge_adapters, trainable_summary
from .settings import LoRASettings, TrainSettings
from .tokenizer import Tokenizer
from .train import Stage, check_out_dir, train


def prepare_model(model_dir, lora: LoRASettings, seed: int, *, adapter=None, attention_dropout: float | None = None,
                  device=None, dtype=None, fast: bool = True):
    """Load the model bidirectional, merge `adapter` into it, set the attention dropout, and wrap it
    with a fresh LoRA seeded by `seed`. fast: the memory-lean LoRA layer (lora.FastLoRALinear), tested
    equal to the plain one, which training takes; fast=False gives the plain LoRALinear."""
    if adapter is not None and not Path(adapter).is_dir():
        raise FileNotFoundError(f"MNTP adapter folder not found: {adapter} (train one with `l2v mntp`)")
    model = load_model(model_dir, dtype=dtype, device=device, causal=False)
    if adapter is not None:
        merge_adapters(model, [adapter])
    if attention_dropout is not None:
        model.set_attention_dropout(attention_dropout)
    torch.manual_seed(seed)  # the fresh LoRA's A matrices
    apply_lora(model, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, fast=fast)
    print(f"{trainable_summary(model)} on {model.lm_head.weight.device}")
    return model


def run_stage(name: str, read: Callable, setup: Callable[..., Stage], model_dir, out_dir, settings: TrainSettings,
              *, adapter=None, attention_dropout: float | None = None, inputs: dict | None = None, device=None,
              dtype=None, resume: bool = False, overwrite: bool = False) -> list[dict]:
    """The prologue every stage shares, then train.py's loop. name: the bar's and the summary's label;
    read() -> the data; setup(model, tokenizer, data) -> Stage; inputs: what the run is made from (its
    data file), recorded in the checkpoint and checked on --resume like the settings. → the log records."""
    check_out_dir(out_dir, resume, overwrite)
    data = read()
    distributed.init()
    model = prepare_model(model_dir, settings.lora, settings.seed, adapter=adapter,
                          attention_dropout=attention_dropout, device=device, dtype=dtype)
    stage = setup(model, Tokenizer(model_dir), data)
    inputs = dict(inputs or {}, base_model=str(model_dir), adapter=adapter and str(adapter))
    return train(model, stage, settings, out_dir, name=name, inputs=inputs, resume=resume, overwrite=overwrite)
