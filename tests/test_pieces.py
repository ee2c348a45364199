"""A training run takes its pieces as arguments (train.Pieces): the attention mask, the LoRA layer,
the pooling and the losses. Handed l2v's own, a run is the run it always was; handed a wrong one,
it is another run — so each piece is really the one called — and nothing is monkey-patched."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CORPUS, losses
from safetensors.torch import load_file
from torch import nn
from torch.testing import assert_close

import l2v
from l2v.contrastive import contrastive_loss
from l2v.lora import FastLoRALinear, apply_lora, merge_lora
from l2v.mntp import mntp_loss, run_mntp
from l2v.model import build_attention_mask
from l2v.pooling import mean_pool
from l2v.runtime.checks import L2VError
from l2v.simcse import run_simcse
from l2v.supervised import run_supervised
from l2v.train import Pieces

MNTP = dict(steps=3, batch_size=4, max_length=16, lr=1e-2, save_every=0, seed=0)
SIMCSE = dict(steps=3, batch_size=4, max_length=16, lr=1e-3, save_every=0, seed=0)


def counted(fn, calls: dict, name: str):
    def wrapper(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return fn(*args, **kwargs)
    return wrapper


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("\n".join(TINY_CORPUS * 4) + "\n")
    return path


def test_mntp_with_l2vs_own_pieces_is_the_same_run(tiny_encoder_folder, text_file, tmp_path):
    calls = {}
    pieces = Pieces(attention_mask=counted(build_attention_mask, calls, "mask"),
                    lora_layer=counted(FastLoRALinear, calls, "lora"), mntp_loss=counted(mntp_loss, calls, "loss"))
    plain = losses(run_mntp(tiny_encoder_folder, text_file, tmp_path / "a", **MNTP))
    handed = losses(run_mntp(tiny_encoder_folder, text_file, tmp_path / "b", pieces=pieces, **MNTP))
    # The mask is built even for MNTP's unpadded blocks, where l2v's own needs none: SDPA then takes
    # another kernel, equal up to float rounding.
    assert_close(torch.tensor(handed), torch.tensor(plain), atol=1e-5, rtol=1e-5)
    layers = l2v.load_model(tiny_encoder_folder).config.num_hidden_layers
    assert calls["lora"] == 7 * layers  # every projection LoRA trains
    assert calls["mask"] >= MNTP["steps"] and calls["loss"] >= MNTP["steps"]  # one mask a forward pass


def test_a_wrong_piece_makes_another_run(tiny_encoder_folder, text_file, tmp_path):
    """The classic mistake of step 1, handed in: the mask left causal. The run really uses it."""
    plain = losses(run_mntp(tiny_encoder_folder, text_file, tmp_path / "a", **MNTP))
    causal = Pieces(attention_mask=lambda mask, causal, **kw: build_attention_mask(mask, causal=True, **kw))
    wrong = losses(run_mntp(tiny_encoder_folder, text_file, tmp_path / "b", pieces=causal, **MNTP))
    assert plain[0] != pytest.approx(wrong[0], abs=1e-3)


class PlainLoRA(nn.Module):
    """A student's LoRA layer: no dropout, nothing of l2v's. Its A and B are drawn as l2v's are."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float):
        super().__init__()
        self.weight, self.bias = base.weight, base.bias
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r

    def forward(self, x):
        return F.linear(x, self.weight, self.bias) + self.lora_B(self.lora_A(x)) * self.scaling


def test_simcse_takes_a_lora_layer_a_pooling_and_a_loss(tiny_encoder_folder, sentence_file, tmp_path):
    calls = {}
    pieces = Pieces(lora_layer=counted(PlainLoRA, calls, "lora"), pool=counted(mean_pool, calls, "pool"),
                    contrastive_loss=counted(contrastive_loss, calls, "loss"))
    run = dict(lora_dropout=0.0, attention_dropout=0.6, **SIMCSE)  # no LoRA dropout: PlainLoRA has none
    plain = losses(run_simcse(tiny_encoder_folder, None, sentence_file, tmp_path / "a", **run))
    handed = losses(run_simcse(tiny_encoder_folder, None, sentence_file, tmp_path / "b", pieces=pieces, **run))
    assert_close(torch.tensor(handed), torch.tensor(plain), atol=1e-9, rtol=1e-3)  # the losses are ~1e-4
    layers = l2v.load_model(tiny_encoder_folder).config.num_hidden_layers
    assert calls["lora"] == 7 * layers and calls["loss"] == SIMCSE["steps"] and calls["pool"] >= SIMCSE["steps"]
    # the student's layer trained as l2v's did, is saved in PEFT's format as l2v's is, and loads as an adapter
    saved, theirs = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("b", "a"))
    assert saved.keys() == theirs.keys() and len(saved) == 2 * 7 * layers
    assert any(v.abs().max() > 0 for k, v in saved.items() if "lora_B" in k)  # B left zero: nothing trained
    for key in saved:
        assert_close(saved[key], theirs[key], atol=1e-6, rtol=1e-4)
    assert json.loads((tmp_path / "b" / "adapter_config.json").read_text())["r"] == 16
    enc = l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=[tmp_path / "b"])
    assert enc.encode("a sentence").shape == (48,)
    # another pooling (the last position) is another run: the pooling handed in is the one used
    last = Pieces(pool=lambda hidden, mask: hidden[:, -1])
    other = losses(run_simcse(tiny_encoder_folder, None, sentence_file, tmp_path / "c", pieces=last, **run))
    assert other[0] != pytest.approx(plain[0], rel=0.01)


def test_supervised_takes_a_pooling_and_a_loss(tiny_encoder_folder, tmp_path):
    rows = [{"query": f"where did the cat {i} sit?", "positive": f"The cat {i} sat on the mat.",
             "negative": f"A dog {i} ran in the park."} for i in range(8)]
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    calls = {}
    pieces = Pieces(pool=counted(mean_pool, calls, "pool"), contrastive_loss=counted(contrastive_loss, calls, "loss"))
    plain = losses(run_supervised(tiny_encoder_folder, None, data, tmp_path / "a", **SIMCSE))
    handed = losses(run_supervised(tiny_encoder_folder, None, data, tmp_path / "b", pieces=pieces, **SIMCSE))
    assert_close(torch.tensor(handed), torch.tensor(plain), atol=1e-6, rtol=1e-6)
    assert calls["loss"] >= SIMCSE["steps"] and calls["pool"] >= SIMCSE["steps"]


def test_a_piece_the_stage_does_not_call_is_refused(tiny_encoder_folder, text_file, sentence_file, tmp_path):
    """Ignored, it would leave l2v's own code to run (and a grader to grade it) without a word."""
    with pytest.raises(L2VError, match=r"the MNTP stage does not call Pieces.pool, Pieces.contrastive_loss"):
        run_mntp(tiny_encoder_folder, text_file, tmp_path / "a", pieces=Pieces(pool=mean_pool,
                                                                            contrastive_loss=contrastive_loss), **MNTP)
    with pytest.raises(L2VError, match=r"the SimCSE stage does not call Pieces.mntp_loss"):
        run_simcse(tiny_encoder_folder, None, sentence_file, tmp_path / "b", pieces=Pieces(mntp_loss=mntp_loss),
                   **SIMCSE)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before anything ran


def test_a_layer_of_ones_own_is_not_merged_by_guesswork(tiny_encoder_folder):
    model = apply_lora(l2v.load_model(tiny_encoder_folder), r=4, layer=PlainLoRA)
    with pytest.raises(TypeError, match="merge_lora merges l2v's LoRALinear; model.layers.0.mlp.down_proj is a PlainLoRA"):
        merge_lora(model)
