"""LLM2Vec step 2: masked next-token prediction (MNTP).

With attention made bidirectional, the decoder has never seen the future, and its states are
worse for it. MNTP adapts it cheaply: mask some input tokens and train LoRA adapters to recover
them — BERT's objective, with one decoder-shaped twist:

    BERT:   the state at position i predicts the masked token at i.
    MNTP:   the state at position i−1 predicts the masked token at i.

A decoder's LM head was trained to read "the next token" off each state, so asking position i−1
for token i keeps that habit and the adaptation is small. Everything below is the recipe in order:
packed blocks of text (read by data.py) → masking → loss (the shift is one line) → the stage, run by
train.py's loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .data import EpochSampler, read_texts
from .runtime import distributed
from .runtime.checkpoints import RunFolder
from .runtime.checks import warn_max_length
from .settings import MNTPSettings, resolve
from .tokenizer import Tokenizer
from .train import Pieces, Stage, mode, prepare_model, train

IGNORE = -100  # label of positions that carry no loss (cross_entropy's ignore_index)


@dataclass(frozen=True)
class Masking:
    prob: float  # chance that a position is selected
    mask_fraction: float  # of the selected: replaced by the mask token "_"
    random_fraction: float  # of the selected: replaced by a random token (the rest stay unchanged)


# The paper's choices (found by search in its appendix): LLaMA-family models like BERT's 80/10/10
# at p = 0.2; Mistral does better with p = 0.8 and always the mask token. The official code's
# Qwen2 config (train_configs/mntp/qwen2.json) uses LLaMA's rule: 80/10/10 at p = 0.2 with "_".
# It has no config for Qwen3, Gemma or Gemma-2: we pick by the same rule (the default 80/10/10
# collator at p = 0.2), and the mask token by its run_mntp.py's rule — the tokenizer's own mask
# token if its files declare one (Gemma's vocabulary has <mask>), else "_" (tokenizer.py).
FAMILY_MASKING = {"llama": Masking(0.2, 0.8, 0.1), "mistral": Masking(0.8, 1.0, 0.0),
                  "qwen2": Masking(0.2, 0.8, 0.1), "qwen3": Masking(0.2, 0.8, 0.1),
                  "gemma": Masking(0.2, 0.8, 0.1), "gemma2": Masking(0.2, 0.8, 0.1)}

# ---------------------------------------------------------------- data


def pack_blocks(tokenizer: Tokenizer, texts: list[str], block_size: int) -> torch.Tensor:
    """Concatenate all texts (an EOS after each) and cut into (N, block_size) blocks, dropping the
    remainder — the official recipe packs wikitext-103 the same way, into 512-token blocks."""
    stream = []
    for ids in tokenizer.encode_batch(texts):
        stream += ([tokenizer.bos_id] if tokenizer.add_bos else []) + ids + [tokenizer.eos_id]
    n = len(stream) // block_size
    if n == 0:
        raise ValueError(f"the text has {len(stream)} tokens, shorter than one block of {block_size}")
    return torch.tensor(stream[: n * block_size]).view(n, block_size)  # (N, block_size)


def mask_tokens(ids: torch.Tensor, tokenizer: Tokenizer, masking: Masking, generator: torch.Generator):
    """→ (inputs, labels). labels hold the original token where a position was selected, else −100.

    Special tokens are never selected, and neither is position 0: no position i−1 exists to
    predict it from.
    """
    labels = ids.clone()
    prob = torch.full(ids.shape, masking.prob)
    prob[torch.isin(ids, torch.tensor(sorted(tokenizer.special_ids)))] = 0.0
    prob[:, 0] = 0.0
    selected = torch.bernoulli(prob, generator=generator).bool()
    labels[~selected] = IGNORE

    inputs = ids.clone()
    u = torch.rand(ids.shape, generator=generator)  # one draw decides mask / random / keep
    to_mask = selected & (u < masking.mask_fraction)
    to_random = selected & (u >= masking.mask_fraction) & (u < masking.mask_fraction + masking.random_fraction)
    inputs[to_mask] = tokenizer.mask_token_id
    inputs[to_random] = torch.randint(tokenizer.vocab_size, ids.shape, generator=generator)[to_random]
    return inputs, labels


# ---------------------------------------------------------------- loss


def mntp_loss(model, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask=None):
    """Cross-entropy of the masked tokens, each predicted from the position before it. → (loss, accuracy)."""
    hidden = model(input_ids, attention_mask)  # (B, T, D), bidirectional
    # The i−1 → i shift: the state at i−1 is scored against the label at i, i.e. CE(logits[:, :-1], labels[:, 1:]).
    hidden, labels = hidden[:, :-1], labels[:, 1:]  # (B, T−1, D), (B, T−1)
    # The LM head only where there is a label: ~20% of positions, instead of a (B, T, V) logits tensor.
    where = labels != IGNORE
    logits = model.lm_head(hidden[where]).float()  # (M, V)
    target = labels[where]  # (M,)
    loss = F.cross_entropy(logits, target)
    accuracy = (logits.argmax(-1) == target).float().mean()
    return loss, accuracy


# ---------------------------------------------------------------- the stage


class MNTPData:
    """Packed blocks, a held-out eval slice, and the stage's own part of training (train.Stage):
    deterministic batches — the micro-batch at (step, micro) depends on nothing else, so resuming
    needs only the step number — the loss on one, and the held-out evaluation."""

    def __init__(self, blocks: torch.Tensor, tokenizer: Tokenizer, masking: Masking, batch_size: int,
                 grad_accum: int, seed: int, eval_blocks: int = 32, loss=None):
        n_eval = min(eval_blocks, len(blocks) // 10)
        self.train, self.eval = blocks[n_eval:], blocks[:n_eval]
        self.tokenizer, self.masking = tokenizer, masking
        self.sampler = EpochSampler(len(self.train), batch_size, grad_accum, seed)
        self.loss_fn = loss or mntp_loss  # train.Pieces.mntp_loss, if one is handed in

    def batch(self, step: int, micro: int):
        rows = self.sampler.indices(step, micro)
        g = torch.Generator().manual_seed(self.sampler.micro_seed(step, micro))
        inputs, labels = mask_tokens(self.train[rows], self.tokenizer, self.masking, g)
        mine = distributed.shard(list(range(len(rows))))  # with torchrun: this process's rows of the batch
        return inputs[mine], labels[mine]

    def loss(self, model, batch):
        device = next(model.parameters()).device
        inputs, labels = (t.to(device) for t in batch)
        value, accuracy = self.loss_fn(model, inputs, labels)
        return value, {"accuracy": accuracy.item(), "tokens": inputs.numel()}

    @torch.no_grad()
    def evaluate(self, model, batch_size: int = 8) -> dict:
        """Masked-token loss and accuracy on the held-out blocks (fixed masks), in eval mode."""
        if len(self.eval) == 0:
            return {}
        g = torch.Generator().manual_seed(12345)
        device = next(model.parameters()).device
        loss_sum, correct, count = 0.0, 0.0, 0
        with mode(model, training=False):
            for s in range(0, len(self.eval), batch_size):
                inputs, labels = mask_tokens(self.eval[s : s + batch_size], self.tokenizer, self.masking, g)
                m = int((labels[:, 1:] != IGNORE).sum())
                loss, acc = self.loss_fn(model, inputs.to(device), labels.to(device))
                loss_sum, correct, count = loss_sum + loss.item() * m, correct + acc.item() * m, count + m
        return {"loss": loss_sum / count, "accuracy": correct / count}


def run_mntp(model_dir, data, out_dir, settings: MNTPSettings | None = None, *, preset: str = "cpu",
             device=None, dtype=None, resume: bool = False, overwrite: bool = False, pieces: Pieces | None = None,
             **overrides) -> list[dict]:
    """The whole MNTP stage → the log records; the adapter lands in out_dir, in PEFT's format.
    settings: default PRESETS["mntp"][preset], then keyword overrides (steps=30, lora_r=8, ...);
    pieces: your own mask, LoRA layer or loss (train.Pieces)."""
    s = resolve("mntp", settings, preset, **overrides)
    pieces = (pieces or Pieces()).check("MNTP", ("attention_mask", "lora_layer", "mntp_loss"))
    run = RunFolder(out_dir, resume, overwrite)  # before minutes of loading, not after
    texts = read_texts(data)
    distributed.init()  # with torchrun, one process per GPU
    model = prepare_model(model_dir, s.lora, s.seed, device=device, dtype=dtype, pieces=pieces)
    tokenizer = Tokenizer(model_dir)
    warn_max_length(s.max_length, model.config)
    family = FAMILY_MASKING[model.config.model_type]
    s = replace(s, mask_prob=s.mask_prob or family.prob)  # the family's rate, written down: the checkpoint records it
    masking = replace(family, prob=s.mask_prob)
    blocks = MNTPData(pack_blocks(tokenizer, texts, s.max_length), tokenizer, masking, s.batch_size, s.grad_accum,
                      s.seed, loss=pieces.mntp_loss)
    print(f"MNTP data: {len(blocks.train)} training blocks of {s.max_length} tokens ({len(blocks.eval)} held out); "
          f"masking p={masking.prob}, {masking.mask_fraction:.0%} '{tokenizer.mask_token}' / "
          f"{masking.random_fraction:.0%} random")
    inputs = dict(data=str(data), base_model=str(model_dir), adapter=None)
    return train(model, Stage(blocks.batch, blocks.loss, blocks.evaluate), s, run, name="MNTP", inputs=inputs)
