"""Batches of token ids for the encoder and for training, over the `tokenizers` library.

One sequence is laid out as

    [BOS]  instruction tokens  text tokens  [EOS]
    └──── prefix: attended, ─┘ └─ pooled ──────┘
          never pooled

Instruction and text are tokenised as *one string*, `instruction + text`, and the instruction's
share is as many leading tokens as the instruction has on its own: sentence-transformers' rule for
a prompt (`Pooling(include_prompt=False)`), so an exported folder read by it pools exactly the
positions l2v pools (`encode_pairs`; INSTRUCTION_RULE names the rule in every evaluation record).
An instruction that ends in a letter or digit gets a ":" (`instruction_prefix`), so its last word
and the text's first are never read as one; `l2v export` writes the prompts with it.
Where the tokenizer merges across the boundary ("query: " + "how" → "query", ":", " how") the
merged token counts as the instruction's, as sentence-transformers counts it: end instructions
with ":" rather than ": " and byte-level tokenizers split cleanly.

Whether a BOS (or EOS) is added is read from the tokenizer files, as the `tokenizers` library
itself would add it: from tokenizer.json's post-processor (Llama-3 and Gemma prepend their BOS
through a template; Qwen's byte-level post-processor adds nothing). An explicit `add_bos_token` /
`add_eos_token` in tokenizer_config.json wins, as it does in transformers' LLaMA and Gemma
tokenizers, which rebuild their template from those keys.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .runtime.checks import L2VError
from .runtime.files import read_json

# Tokens per text when embedding, everywhere (Encoder, `l2v encode`, `l2v eval`, the demo): 512, as MTEB
# runs LLM2Vec models. Every evaluation record stores the max_length its scores were made with.
DEFAULT_MAX_LENGTH = 512

# LLM2Vec's MNTP mask token for models without one of their own (LLaMA, Mistral, Qwen). The
# official run_mntp.py keeps a tokenizer's own mask token when its files declare one.
DEFAULT_MASK_TOKEN = "_"

# How an instruction and its text become ids (above). Evaluation records carry it, so scores made
# under the earlier rule (instruction and text tokenised apart, ids joined) are never reused.
INSTRUCTION_RULE = "joint-colon"


def instruction_prefix(instruction: str) -> str:
    """The string put before a text: the instruction, with ":" added when it ends in a letter or digit
    ("…answers the question" + "How" would otherwise be read as the one word "questionHow")."""
    return instruction + ":" if instruction and instruction[-1].isalnum() else instruction


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) token ids, padding = pad id
    attention_mask: torch.Tensor  # (B, T) 1 = real token (instruction or text), 0 = padding
    pool_mask: torch.Tensor  # (B, T) 1 = text token to pool over (no BOS, no instruction)

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.pool_mask)))


class Tokenizer:
    def __init__(self, folder, padding_side: str = "left", mask_token: str | None = None):
        from tokenizers import Tokenizer as _HFTokenizer

        folder = Path(folder)
        file = folder / "tokenizer.json"
        if not file.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {folder}")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
        try:
            self.tk = _HFTokenizer.from_file(str(file))
        except Exception as e:  # the tokenizers library's own error: name the file
            raise L2VError(f"{file}: not a readable tokenizer ({str(e).splitlines()[0]})") from None
        self.tk.no_padding()
        self.tk.no_truncation()
        cfg_file = folder / "tokenizer_config.json"
        cfg = read_json(cfg_file) if cfg_file.is_file() else {}
        model_cfg_file = folder / "config.json"
        model_cfg = read_json(model_cfg_file) if model_cfg_file.is_file() else {}
        added_before, added_after = self._post_processor_tokens()
        # BOS/EOS: tokenizer_config.json's tokens (Qwen writes "bos_token": null: it has none); a
        # key that is absent falls back to the template's token, then to config.json's id.
        self.bos_id = self._id(cfg["bos_token"]) if "bos_token" in cfg else (
            added_before[0] if len(added_before) == 1 else self._first(model_cfg.get("bos_token_id")))
        self.eos_id = self._id(cfg["eos_token"]) if "eos_token" in cfg else (
            added_after[-1] if added_after else self._first(model_cfg.get("eos_token_id")))
        self.add_bos = bool(cfg.get("add_bos_token", self.bos_id is not None and added_before == [self.bos_id]))
        self.add_eos = bool(cfg.get("add_eos_token", self.eos_id is not None and added_after == [self.eos_id]))
        if (self.add_bos and self.bos_id is None) or (self.add_eos and self.eos_id is None):
            raise ValueError(f"{cfg_file} asks to add a {'BOS' if self.add_bos else 'EOS'} token but names none")
        # Padding is masked out everywhere, so any id works; LLaMA-2 has no pad token at all.
        self.pad_id = self._id(cfg.get("pad_token"))
        if self.pad_id is None:
            self.pad_id = self.eos_id if self.eos_id is not None else 0
        self.padding_side = padding_side  # left by default for embeddings, as the official LLM2Vec
        self._warned_truncation = False  # truncation warns once per tokenizer
        if mask_token is None:  # the official rule: the tokenizer's own mask token, else "_"
            own = cfg.get("mask_token")
            mask_token = (own.get("content") if isinstance(own, dict) else own) or DEFAULT_MASK_TOKEN
        self.mask_token = mask_token
        self.mask_token_id = self.tk.token_to_id(mask_token)
        if self.mask_token_id is None:
            ids = self.encode(mask_token)
            if len(ids) != 1:
                raise ValueError(f"mask token {mask_token!r} is not a single token in this vocabulary (got {ids})")
            self.mask_token_id = ids[0]
        self.special_ids = {i for i in (self.bos_id, self.eos_id, self.pad_id) if i is not None}
        self.special_ids |= {i for i, t in self.tk.get_added_tokens_decoder().items() if t.special}

    def _post_processor_tokens(self) -> tuple[list[int], list[int]]:
        """The ids tokenizer.json's post-processor puts before and after a single text: asked of
        `tokenizers` itself, by encoding a probe with and without special tokens."""
        plain = self.tk.encode("a", add_special_tokens=False).ids
        full = self.tk.encode("a", add_special_tokens=True).ids
        for i in range(len(full) - len(plain) + 1):
            if full[i : i + len(plain)] == plain:
                return full[:i], full[i + len(plain):]
        return [], []  # a post-processor that rewrites the text itself: we add nothing

    @staticmethod
    def _first(token_id):
        return token_id[0] if isinstance(token_id, list) else token_id

    def _id(self, token):
        if isinstance(token, dict):  # {"content": "<s>", ...} in some tokenizer_config.json files
            token = token.get("content")
        return None if token is None else self.tk.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` alone, no special tokens added."""
        return self.tk.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tk.encode_batch(texts, add_special_tokens=False)]

    def encode_pairs(self, instructions: list[str], texts: list[str]) -> list[tuple[list[int], list[int]]]:
        """(instruction ids, text ids) per pair: `instruction + text` tokenised as one string, the
        first len(encode(instruction)) ids being the instruction's (sentence-transformers' prompt rule).
        An instruction ending in a letter or digit gets a ":" first (instruction_prefix)."""
        instructions = [instruction_prefix(i) for i in instructions]
        joint = self.encode_batch([i + t for i, t in zip(instructions, texts)])
        distinct = list(dict.fromkeys(instructions))
        share = {i: len(ids) for i, ids in zip(distinct, self.encode_batch(distinct))}
        return [(ids[: share[i]], ids[share[i] :]) for i, ids in zip(instructions, joint)]

    def decode(self, ids) -> str:
        return self.tk.decode(list(ids), skip_special_tokens=False)

    def __call__(self, texts: list[str], instructions: list[str] | None = None, max_length: int = DEFAULT_MAX_LENGTH) -> Batch:
        """Tokenise, truncate and pad a batch. instructions[i] ("" for none) goes before texts[i]."""
        pairs = self.encode_pairs(instructions or [""] * len(texts), texts)
        return self.pad([self.layout(p, b, max_length) for p, b in pairs])

    def layout(self, instruction_ids: list[int], text_ids: list[int], max_length: int):
        """→ (ids, number of leading tokens not pooled). Truncation cuts the text's end, keeping EOS."""
        prefix = ([self.bos_id] if self.add_bos else []) + instruction_ids
        suffix = [self.eos_id] if self.add_eos else []
        if not text_ids and not suffix:
            # An empty text has no token to pool: the EOS token stands in for it, so it still gets
            # a well-defined embedding (the same for every empty text with the same instruction).
            text_ids = [self.eos_id if self.eos_id is not None else self.pad_id]
        room = max_length - len(prefix) - len(suffix)
        if room < 1:
            raise ValueError(f"max_length {max_length} leaves no room for text after a {len(prefix)}-token prefix")
        if len(text_ids) > room:
            if not self._warned_truncation:
                warnings.warn(f"text longer than max_length={max_length} tokens was truncated", stacklevel=3)
                self._warned_truncation = True
            text_ids = text_ids[:room]
        return prefix + text_ids + suffix, len(prefix)

    def pad(self, sequences: list[tuple[list[int], int]]) -> Batch:
        """[(ids, n_prefix), ...] → a padded Batch on the configured side."""
        B, T = len(sequences), max((len(ids) for ids, _ in sequences), default=0)
        input_ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros(B, T, dtype=torch.long)
        pool_mask = torch.zeros(B, T, dtype=torch.long)
        for b, (ids, n_prefix) in enumerate(sequences):
            start = T - len(ids) if self.padding_side == "left" else 0
            input_ids[b, start : start + len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[b, start : start + len(ids)] = 1
            pool_mask[b, start + n_prefix : start + len(ids)] = 1
        return Batch(input_ids, attention_mask, pool_mask)
