"""Grader for assignment 11: each of your pieces plugged into l2v's MNTP and SimCSE stages, every other
piece l2v's own, on a tiny model with the inputs, masks, batches and LoRA weights chosen here (so no
piece is judged by the order of its random draws); then MNTP → SimCSE with all of your pieces at
once, against l2v's run from the same start."""

import contextlib
import functools
import io
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn
from grading import SOLUTION, expect_close, integrity_problem, load, require

from l2v.contrastive import contrastive_loss as l2v_contrastive_loss
from l2v.encoder import Encoder
from l2v.evaluate.metrics import spearman as l2v_spearman
from l2v.lora import LoRALinear as L2VLoRALinear
from l2v.mntp import IGNORE, mntp_loss as l2v_mntp_loss
from l2v.mntp import run_mntp
from l2v.settings import LoRASettings, resolve
from l2v.simcse import run_simcse, two_views
from l2v.tokenizer import Batch
from l2v.train import Pieces, prepare_model

a11 = load("a11_capstone")
SOURCE = {"attention_mask": "a02_bidirectional", "lora_layer": "a04_lora", "pool": "a03_pooling",
          "mntp_loss": "a05_mntp", "contrastive_loss": "a06_simcse", "metric": "a07_evaluation"}
MNTP_PIECES = ["attention_mask", "lora_layer", "mntp_loss"]
SIMCSE_PIECES = ["attention_mask", "lora_layer", "pool", "contrastive_loss"]
POINTS = {"test_piece_in_mntp": 3, "test_piece_in_simcse": 3, "test_metric": 2, "test_what_a_piece_refuses": 2,
          "test_short_run": 6}
LORA = LoRASettings(r=4, alpha=8, dropout=0.0)
_TMP = tempfile.TemporaryDirectory(prefix="a11-")  # removed when the grader's process ends


@functools.cache
def tiny_folder() -> str:
    """A random 2-layer LLaMA saved by transformers, with a small byte-level BPE (tutorials/common.py)."""
    import transformers

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tutorials/, for common.py
    from common import SENTENCES, write_tiny_tokenizer

    cfg = transformers.LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, eos_token_id=2,
                                   pad_token_id=0)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(_TMP.name)
    write_tiny_tokenizer(_TMP.name, SENTENCES * 10, vocab_size=cfg.vocab_size)
    (Path(_TMP.name) / "sentences.txt").write_text("\n".join(SENTENCES * 6) + "\n")
    return _TMP.name


def where(piece: str, stage: str) -> str:
    return f"{piece} (your {SOURCE[piece]}, through a11_capstone.{piece}) in the {stage} stage"


def own_file_first(piece: str, stage: str):
    """A piece whose aNN file uses an existing answer scores nothing here either."""
    if SOLUTION:
        return
    module = getattr(a11, SOURCE[piece], None) or sys.modules.get(SOURCE[piece])
    problem = integrity_problem(SOURCE[piece], module) if module is not None else None
    require(problem is None, f"{where(piece, stage)}: {problem}")


def lora_params(model) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if ".lora_A." in n or ".lora_B." in n}


def models(piece: str, yours):
    """l2v's model and the same with your piece: both bidirectional, LoRA on every projection, and the
    same nonzero A and B (drawn here), so the LoRA path carries a gradient to both."""
    mine = {piece: yours} if piece in ("attention_mask", "lora_layer") else {}
    with contextlib.redirect_stdout(io.StringIO()):
        ref = prepare_model(tiny_folder(), LORA, seed=0, fast=False)
        model = prepare_model(tiny_folder(), LORA, seed=0, fast=False, pieces=Pieces(**mine))
    theirs, got = lora_params(ref), lora_params(model)
    missing = sorted(set(theirs) - set(got))
    require(not missing, f"{where(piece, 'LoRA')}: l2v saves each layer's lora_A.weight and lora_B.weight "
                         f"(nn.Linear children named lora_A and lora_B); not found: {missing[:2]}")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in theirs.items():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
            got[name].copy_(p)
    return ref, model


def gradients_agree(loss, want, ref, model, what: str):
    names = sorted(lora_params(ref))
    want_g = torch.autograd.grad(want, [lora_params(ref)[n] for n in names])
    if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
        raise AssertionError(f"{what}: the loss carries no gradient (.item(), .detach() or torch.no_grad()?)")
    got_g = torch.autograd.grad(loss, [lora_params(model)[n] for n in names], allow_unused=True)
    for name, g, w in zip(names, got_g, want_g):
        require(g is not None, f"{what}: no gradient reaches {name}")
        expect_close(g, w, f"{what}: the gradient of {name}")


def mntp_batch(ref):
    """Packed blocks (no padding, as MNTP's), labels on ~30 % of positions (never 0); half of them
    the reference model's own prediction, so accuracy is neither 0 nor 1."""
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 300, (4, 12), generator=g)
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, torch.full_like(ids, IGNORE))
    labels[:, 0] = IGNORE
    with torch.no_grad():
        predicted = ref.lm_head(ref(ids)).argmax(-1)  # (B, T): the token each state predicts next
    agree = (labels[:, 1:] != IGNORE) & (torch.rand(4, 11, generator=g) < 0.5)
    labels[:, 1:] = torch.where(agree, predicted[:, :-1], labels[:, 1:])
    return ids, labels


@pytest.mark.parametrize("piece", MNTP_PIECES)
def test_piece_in_mntp(piece):
    own_file_first(piece, "MNTP")
    what = where(piece, "MNTP")
    ref, model = models(piece, getattr(a11, piece))
    ids, labels = mntp_batch(ref)
    want, want_accuracy = l2v_mntp_loss(ref, ids, labels)
    got = (a11.mntp_loss if piece == "mntp_loss" else l2v_mntp_loss)(model, ids, labels)
    require(isinstance(got, tuple) and len(got) == 2, f"{what}: l2v expects (loss, accuracy), got {type(got).__name__}")
    loss, accuracy = got
    expect_close(torch.as_tensor(loss), want, f"{what}: the loss")
    expect_close(torch.as_tensor(accuracy, dtype=torch.float32).reshape(()), want_accuracy,
                 f"{what}: the accuracy (labelled tokens predicted right, from the state one to the left)")
    gradients_agree(loss, want, ref, model, what)


def simcse_batch() -> Batch:
    """Left- and right-padded rows; the first real token of each is attended to but not pooled."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 300, (4, 9), generator=g)
    attention = torch.ones(4, 9, dtype=torch.long)
    attention[1, :3] = 0  # left padding
    attention[2, 6:] = 0  # right padding
    attention[3, :1] = 0
    ids = ids.masked_fill(attention == 0, 0)
    first = (attention.cumsum(1) == 1) & attention.bool()
    return Batch(ids, attention, (attention.bool() & ~first).long())


@pytest.mark.parametrize("piece", SIMCSE_PIECES)
def test_piece_in_simcse(piece):
    own_file_first(piece, "SimCSE")
    what = where(piece, "SimCSE")
    ref, model = models(piece, getattr(a11, piece))
    encoders = [Encoder(m, None, pool_fn=a11.pool if m is model and piece == "pool" else None) for m in (ref, model)]
    views = []
    for m, encoder in zip((ref, model), encoders):
        m.set_attention_dropout(0.1)  # two different views; the same draws in both models (seeded)
        m.train()
        torch.manual_seed(4)
        views.append(two_views(encoder, simcse_batch()))
    want = l2v_contrastive_loss(*views[0], scale=20.0)
    loss = (a11.contrastive_loss if piece == "contrastive_loss" else l2v_contrastive_loss)(*views[1], scale=20.0)
    expect_close(torch.as_tensor(loss), want, f"{what}: the loss")
    gradients_agree(loss, want, ref, model, what)


def test_metric():
    own_file_first("metric", "scoring")
    gold = [0.0, 1.0, 1.0, 2.5, 3.0, 3.0, 3.0, 4.5, 5.0, 0.5]
    cosines = [0.1, 0.35, 0.2, 0.35, 0.8, 0.5, 0.61, 0.7, 0.7, 0.05]
    got = a11.metric(gold, cosines)
    require(isinstance(got, float), f"{where('metric', 'scoring')}: return a Python float, got {type(got).__name__}")
    expect_close(torch.tensor(got), torch.tensor(l2v_spearman(gold, cosines)), where("metric", "scoring"))


def test_what_a_piece_refuses():
    """A piece asked for what it cannot do must say so, not answer something else."""
    padding = torch.ones(2, 6, dtype=torch.long)
    try:
        mask = a11.attention_mask(padding, True, sliding_window=2)
        from l2v.model import build_attention_mask

        require(torch.equal(torch.as_tensor(mask).bool(), build_attention_mask(padding, causal=True, sliding_window=2)),
                "attention_mask with sliding_window=2 returned a mask without the window: raise a ValueError instead")
    except ValueError:
        pass
    torch.manual_seed(5)
    try:
        layer = a11.lora_layer(nn.Linear(8, 8, bias=False), 2, 4, 0.5)
        with torch.no_grad():
            layer.lora_B.weight.fill_(1.0)
            layer.train()
            x = torch.randn(16, 8)
            require(not torch.equal(layer(x), layer(x)),
                    "lora_layer with dropout 0.5 returned a layer without dropout: raise a ValueError instead")
    except ValueError:
        pass
    a, b, n = (torch.randn(4, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    try:
        loss = a11.contrastive_loss(a, b, n, scale=20.0)
        expect_close(torch.as_tensor(loss), l2v_contrastive_loss(a, b, n, scale=20.0),
                     "contrastive_loss with hard negatives (ignored?): raise a ValueError, or use them as a10 does")
    except ValueError:
        pass


def _started_alike(layer):
    """Wrap a LoRA layer function so every layer starts from the same A (drawn here, by call order) and B = 0."""
    calls = []

    def make(base, r, alpha, dropout):
        out = layer(base, r, alpha, dropout)
        g = torch.Generator().manual_seed(100 + len(calls))
        calls.append(1)
        with torch.no_grad():
            out.lora_A.weight.copy_(torch.empty_like(out.lora_A.weight).uniform_(-0.3, 0.3, generator=g))
            out.lora_B.weight.zero_()
        return out
    return make


def losses(records) -> list[float]:
    return [r["loss"] for r in records if "loss" in r and "step" in r and not r.get("eval")]


def test_short_run():
    folder, tmp_path = tiny_folder(), Path(tempfile.mkdtemp(dir=_TMP.name))
    data = Path(folder) / "sentences.txt"
    common = dict(preset="cpu", batch_size=4, lr=3e-3, warmup_steps=0, save_every=0, lora_r=4, lora_alpha=8,
                  lora_dropout=0.0, autocast=False)
    mntp = resolve("mntp", steps=4, max_length=32, **common)
    simcse = resolve("simcse", steps=4, max_length=40, **common)
    l2v_layer = lambda base, r, alpha, dropout: L2VLoRALinear(base, r, alpha, dropout)  # noqa: E731
    runs = {}
    for who, fns in (("l2v", {}), ("yours", {name: getattr(a11, name) for name in SOURCE if name != "metric"})):
        layer = _started_alike(fns.get("lora_layer", l2v_layer))
        pick = lambda names: Pieces(**{n: fns.get(n) for n in names}, lora_layer=layer)  # noqa: E731
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            m = run_mntp(folder, data, tmp_path / who / "mntp", settings=mntp,
                         pieces=pick(["attention_mask", "mntp_loss"]))
            s = run_simcse(folder, tmp_path / who / "mntp", data, tmp_path / who / "simcse", settings=simcse,
                           pieces=pick(["attention_mask", "pool", "contrastive_loss"]))
        runs[who] = {"MNTP": losses(m), "SimCSE": losses(s)}
    for stage in ("MNTP", "SimCSE"):
        want, got = runs["l2v"][stage], runs["yours"][stage]
        require(len(got) == len(want) > 0, f"short run: {stage} logged {len(got)} steps, l2v's run {len(want)}")
        for step, (y, w) in enumerate(zip(got, want), 1):
            require(abs(y - w) <= 1e-3 * abs(w) + 1e-7,
                    f"short run with all your pieces (LoRA started from the grader's A and B = 0): {stage} step "
                    f"{step} loss {y:.6g}, l2v's run {w:.6g} (tolerance: 1e-3 of l2v's)")
