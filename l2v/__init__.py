"""l2v — LLM2Vec from scratch: a decoder-only LLM turned into a text encoder.

Public API (tutorials, assignments and reference checks call exactly these):
    load_model(path, dtype=None, device=None, causal=True) -> Transformer
    model(input_ids, attention_mask=None, causal=None, output_hidden_states=False)
    model.lm_head(hidden) -> logits
    Encoder.from_pretrained(path, adapters=(), causal=False, pooling="mean", ...).encode(texts)
    Tokenizer(folder), pool(hidden, mask, method)

Training, one module per paper step, each taking its settings (l2v.settings: dataclasses, PRESETS)
and, if you hand it yours, its pieces (l2v.train.Pieces: mask, LoRA layer, pooling, losses):
    l2v.mntp.run_mntp(model_dir, data, out_dir, settings, pieces=None)
    l2v.simcse.run_simcse(model_dir, mntp_adapter, data, out_dir, settings, pieces=None)
    l2v.supervised.run_supervised(model_dir, mntp_adapter, data, out_dir, settings, pieces=None)
Evaluation: l2v.evaluate (evaluate, evaluate_model); the built-in suites: l2v.sources.suites.build_suite.

The folders: this one is the paper's path; runtime/ (plumbing), formats/ (files in and out),
sources/ (what is fetched from PyPI), evaluate/ (the evaluator), tools/ (what a user runs).
"""

from .config import ModelConfig
from .encoder import Encoder
from .formats.loading import CheckpointError, load_model
from .model import Transformer, build_attention_mask
from .pooling import pool
from .tokenizer import Batch, Tokenizer

__all__ = [
    "Batch", "CheckpointError", "Encoder", "ModelConfig", "Tokenizer", "Transformer",
    "build_attention_mask", "load_model", "pool",
]
__version__ = "0.1.0"
