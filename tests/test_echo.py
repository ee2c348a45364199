"""Issue 39: echo embeddings (Springer et al., 2024) — the text twice, only the second copy pooled."""

import numpy as np
import pytest
import torch

import l2v
from l2v.encoder import ECHO_TEMPLATE
from l2v.runtime.checks import L2VError

TEXTS = ["The cat sat on the mat.", "A dog ran in the park.", "Stock markets fell sharply today."]


@pytest.mark.parametrize("causal", [True, False])
def test_echo_pools_only_the_second_copy(tiny_encoder_folder, causal):
    enc = l2v.Encoder.from_pretrained(tiny_encoder_folder, causal=causal, echo=True, max_length=64)
    got = enc.encode(TEXTS, instruction="Say:")
    head, middle = ECHO_TEMPLATE
    tok = enc.tokenizer
    for i, text in enumerate(TEXTS):
        # by hand: one sequence, the states of the second copy's tokens, averaged
        (prefix, body), = tok.encode_pairs([f"Say:{head}{text}{middle}"], [text])
        ids, n_prefix = tok.layout(prefix, body, 64)
        assert tok.decode(ids[n_prefix:]).strip() == text  # what is pooled is the text, once
        assert tok.decode(ids).count(text) == 2  # and the model sees it twice
        with torch.no_grad():
            hidden = enc.model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
        np.testing.assert_allclose(got[i], hidden[n_prefix:].mean(0).numpy(), atol=1e-5)
    plain = l2v.Encoder.from_pretrained(tiny_encoder_folder, causal=causal, max_length=64).encode(TEXTS, instruction="Say:")
    assert np.abs(got - plain).max() > 1e-3  # the first copy changed what the second copy's tokens hold


def test_echo_keeps_both_copies_whole_and_refuses_shared_passes(tiny_encoder_folder):
    enc = l2v.Encoder.from_pretrained(tiny_encoder_folder, causal=True, echo=True, max_length=40)
    long = " ".join(TEXTS * 6)
    instructions, texts = enc.echo_inputs([""], [long])
    (prefix, body), = enc.tokenizer.encode_pairs(instructions, texts)
    ids, n_prefix = enc.tokenizer.layout(prefix, body, 40)
    assert len(ids) <= 40 and enc.tokenizer.decode(ids).count(texts[0]) == 2  # cut once, before copying
    with pytest.raises(L2VError, match="use encode for echo embeddings"):
        enc.encode_poolings(TEXTS, ["mean", "last"])
