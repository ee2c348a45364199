"""Assignment 11 — the capstone: an embedder trained from your own pieces (notebook: tutorials/12_capstone.ipynb).

Assignments 02–07 each wrote one piece of LLM2Vec. Here they become one training run. l2v's runs
take their functions from `l2v.train.Pieces` — hand a run yours and it calls them instead of its
own. But l2v calls each piece with its own signature, not the one your assignment had: write the
six adapters below, each a few lines around your aNN function. Then

    python -m pytest tutorials/assignments/test_a11_capstone.py    # each piece, then a short run, on a tiny model
    python tutorials/assignments/capstone.py runs/capstone         # your embedder on SmolLM2 (≤ 20 min on 2 cores)

and write the report (a11_report.md). The grader plugs in one piece at a time, every other piece
l2v's own, on inputs and LoRA weights it chooses — so a failure names the piece and the stage —
then runs MNTP → SimCSE with all of yours and compares the losses with l2v's run.

Use your own files: a02_bidirectional.py … a07_evaluation.py beside this one (a piece whose file
uses an existing answer scores nothing here either). Not l2v's mask, pooling, LoRA, losses or metrics.
"""

import a02_bidirectional
import a03_pooling
import a04_lora
import a05_mntp
import a06_simcse
import a07_evaluation


def attention_mask(padding_mask, causal, sliding_window=None):
    """l2v's model calls this for every batch: (B, T) padding mask → (B, 1, T, T) bool, True where
    query i may attend to key j. Use your a02 attention_mask. It draws no sliding window (Mistral's
    causal layers): if one is asked for, raise a ValueError that says so, rather than return a mask
    without it (SmolLM2 never asks)."""
    # TODO
    raise NotImplementedError("attention_mask")


def lora_layer(base, r, alpha, dropout):
    """l2v calls this once for every projection it trains (q, k, v, o, gate, up and down in every
    block — not only the ones your a04 apply_lora chose) and saves each layer's lora_A and lora_B in
    PEFT's format. Return your a04 LoRALinear around `base`. Your layer has no dropout: if dropout
    is not 0, raise a ValueError (the capstone trains with LoRA dropout 0)."""
    # TODO
    raise NotImplementedError("lora_layer")


def pool(hidden, pool_mask):
    """hidden (B, T, D), pool_mask (B, T) → (B, D): the embedding of each text (SimCSE's views).
    Use your a03 mean pooling."""
    # TODO
    raise NotImplementedError("pool")


def mntp_loss(model, input_ids, labels):
    """MNTP's loss on one batch → (loss, accuracy). `model(input_ids)` returns the final hidden
    states (B, T, D) — bidirectional, through the mask above — and `model.lm_head` maps D to the
    vocabulary. loss: your a05 mntp_loss. accuracy: the fraction of the labelled tokens whose most
    likely prediction (from the state one position to the left, as in the loss) is the label — a
    0-dim tensor, no gradient needed (l2v logs it)."""
    # TODO
    raise NotImplementedError("mntp_loss")


def contrastive_loss(anchors, positives, negatives=None, scale=20.0):
    """SimCSE's loss: anchors and positives (B, D) are the two views, row i of each the same
    sentence. Use your a06 info_nce. With hard negatives (the supervised step, not part of the
    capstone) raise a ValueError — or, for the extension tier, use your a10."""
    # TODO
    raise NotImplementedError("contrastive_loss")


def metric(a, b) -> float:
    """The STS score: your a07 spearman. capstone.py scores the STS tasks again with it, beside the
    evaluator's own number."""
    # TODO
    raise NotImplementedError("metric")
