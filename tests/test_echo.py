"""Issue 39: echo embeddings (Springer et al., 2024) — the text twice, only the second copy pooled."""

import numpy as np
import pytest
import torch

import l2v
from l2v.encoder import ECHO_TEMPLATE
from l2v.runtime.checks import L2VError

# The first starts with a word that byte-level BPE merges with the space before it (" the"): the template's
# last space must not take it into the unpooled part.
TEXTS = ["the cat sat on the mat.", "A dog ran in the park.", "Stock markets fell sharply today."]


@pytest.mark.parametrize("causal", [True, False])
def test_echo_pools_only_the_second_copy(tiny_encoder_folder, causal):
    enc = l2v.Encoder.from_pretrained(tiny_encoder_folder, causal=causal, echo=True, max_length=64)
    got = enc.encode(TEXTS, instruction="Say:")
    head, middle = ECHO_TEMPLATE
    tok = enc.tokenizer
    for i, text in enumerate(TEXTS):
        # by hand: one sequence, the states of the second copy's tokens, averaged
        (prefix, body), = tok.encode_pairs([f"Say: {head}{text}{middle}"], [" " + text])
        ids, n_prefix = tok.layout(prefix, body, 64)
        assert tok.decode(ids[n_prefix:]).strip() == text, "the pooled copy lost a token to the template"
        assert tok.decode(ids).count(text) == 2  # and the model sees it twice
        with torch.no_grad():
            hidden = enc.model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
        np.testing.assert_allclose(got[i], hidden[n_prefix:].mean(0).numpy(), atol=1e-5)
    plain = l2v.Encoder.from_pretrained(tiny_encoder_folder, causal=causal, max_length=64).encode(TEXTS, instruction="Say:")
    assert np.abs(got - plain).max() > 1e-3  # the first copy changed what the second copy's tokens hold


def test_echo_keeps_both_copies_whole_and_refuses_shared_passes(tiny_encoder_folder):
    enc = l2v.Encoder.from_pretrained(tiny_encoder_folder, causal=True, echo=True, max_length=64)
    long = " ".join(TEXTS * 6)
    instructions, texts = enc.echo_inputs([""], [long])
    (prefix, body), = enc.tokenizer.encode_pairs(instructions, texts)
    ids, n_prefix = enc.tokenizer.layout(prefix, body, 64)
    cut = texts[0].strip()
    assert len(ids) <= 64 and 5 < len(cut.split()) < len(long.split())  # cut once, before copying
    assert enc.tokenizer.decode(ids[n_prefix:]).strip() == cut and instructions[0].endswith(cut + ECHO_TEMPLATE[1])
    with pytest.raises(L2VError, match="use encode for echo embeddings"):
        enc.encode_poolings(TEXTS, ["mean", "last"])
