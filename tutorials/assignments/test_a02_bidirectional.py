"""Grader for assignment 02: your attention mask drives an l2v model, checked against transformers."""

import functools
import tempfile

import pytest
import torch
import transformers
from grading import expect_close, load, require

import l2v
from l2v import model as l2v_model
from l2v.tools.analyze import layer_similarity as reference_similarity

a02 = load("a02_bidirectional")
PADDING = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])  # the second sequence left-padded
POINTS = {"test_mask_table": 3, "test_your_mask_in_a_model_matches_transformers": 3,
          "test_batch_of_one_is_really_bidirectional": 2, "test_layer_similarity": 2}
_TMP = tempfile.TemporaryDirectory(prefix="a02-")  # removed when the grader's process ends


@functools.cache
def tiny_folder():
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, attn_implementation="eager")
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(_TMP.name)
    return _TMP.name


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_mask_table(causal):
    T = PADDING.shape[1]
    keys_real = PADDING.bool()[:, None, None, :].expand(2, 1, T, T)
    tri = torch.ones(T, T).tril().bool()
    eye = torch.eye(T, dtype=torch.bool)
    expected = l2v_model.build_attention_mask(PADDING, causal=causal)
    mistakes = {
        "padding rows must still see themselves (add the diagonal): a row of nothing but −inf gives NaN":
            keys_real & tri if causal else keys_real,
        "mask padding on the keys (columns: no one attends to a padded token), not on the queries (rows)":
            PADDING.bool()[:, None, :, None].expand(2, 1, T, T) & (tri if causal else True) | eye,
    }
    if causal:
        mistakes["causal means key j ≤ query i: the lower triangle (rows are queries); yours is transposed"] = \
            keys_real & tri.T | eye
    else:
        mistakes["bidirectional means no triangle at all — LLM2Vec removes the causal mask"] = keys_real & tri | eye
    got = a02.attention_mask(PADDING, causal)
    require(isinstance(got, torch.Tensor) and got.dtype == torch.bool, "attention_mask must return a bool tensor")
    expect_close(got.float(), expected.float(), f"attention_mask(causal={causal})",
                 mistakes={k: v.float() for k, v in mistakes.items()})


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_your_mask_in_a_model_matches_transformers(causal, monkeypatch):
    """Every layer's states at real tokens, with your mask inside l2v's model, against transformers."""
    folder = tiny_folder()
    monkeypatch.setattr(l2v_model, "build_attention_mask",
                        lambda mask, causal, sliding_window=None: a02.attention_mask(mask, causal))
    ours = l2v.load_model(folder)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    ids = torch.randint(3, 64, PADDING.shape)
    with torch.no_grad():
        _, states = ours(ids, PADDING, causal=causal, output_hidden_states=True)
        if causal:
            ref = hf(ids, attention_mask=PADDING, output_hidden_states=True).hidden_states
        else:  # transformers takes a ready 4-D mask as is: here one that masks padding only
            four_d = torch.zeros(2, 1, 5, 5).masked_fill(~PADDING.bool()[:, None, None, :], torch.finfo(torch.float32).min)
            ref = hf(ids, attention_mask=four_d, output_hidden_states=True).hidden_states
    real = PADDING.bool()
    for layer, (a, b) in enumerate(zip(states, ref)):
        require(not torch.isnan(a).any(), f"layer {layer}: NaN in the hidden states — does every row of your "
                "mask have at least one True (padding rows: themselves)?")
        expect_close(a[real], b[real], f"hidden states after layer {layer} ({'causal' if causal else 'bidirectional'})",
                     atol=1e-5)


def test_batch_of_one_is_really_bidirectional(monkeypatch):
    """The official llm2vec's old bug: at batch size 1 with no padding the model silently stayed causal."""
    folder = tiny_folder()
    monkeypatch.setattr(l2v_model, "build_attention_mask",
                        lambda mask, causal, sliding_window=None: a02.attention_mask(mask, causal))
    model = l2v.load_model(folder, causal=False)
    model.attn_impl = "math"  # the reading path always applies the mask (SDPA gets none when nothing is hidden)
    ids = torch.randint(3, 64, (1, 8))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 64
    with torch.no_grad():
        moved = (model(ids)[0, 0] - model(changed)[0, 0]).abs().max().item()
    require(moved > 1e-4, "changing the last token did not change position 0: the model is still causal")


def test_layer_similarity():
    model = l2v.load_model(tiny_folder())
    ids = torch.randint(3, 64, (1, 9))
    expected = reference_similarity(model, ids)
    with torch.no_grad():
        _, c = model(ids, causal=True, output_hidden_states=True)
        _, b = model(ids, causal=False, output_hidden_states=True)
    got = a02.layer_similarity(model, ids)
    require(isinstance(got, torch.Tensor), "layer_similarity returns a tensor (L + 1, T)")
    require(got.shape[0] != len(c) - 1, f"{got.shape[0]} rows: there are L + 1 = {len(c)} hidden states — keep the "
            "embeddings (row 0, where the two are identical) as well as every layer's output")
    over_positions = torch.stack([torch.nn.functional.cosine_similarity(x[0], y[0], dim=0) for x, y in zip(c, b)])
    expect_close(got, expected, "layer_similarity", mistakes={
        "the cosine is between the two D-dimensional states of one token (dim=-1), not along positions":
            over_positions,
        "causal and bidirectional are swapped in one of the runs, or both runs use the same mode: every "
        "cosine is 1": torch.ones_like(expected),
    })
