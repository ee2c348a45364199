"""Issue 3: poolers, right under left and right padding. Issue 15: eos / last / bos as the official
llm2vec (0.2.3) defines them, re-implemented here from its rule (not imported)."""

import json
import shutil

import numpy as np
import pytest
import torch
from torch.testing import assert_close

import l2v
from l2v.pooling import POOLINGS, pool


def test_hand_computed_values():
    h = torch.tensor([[[1.0], [2.0], [3.0], [9.0]]])  # (1, 4, 1)
    m = torch.tensor([[1, 1, 1, 0]])
    assert pool(h, m, "mean").item() == pytest.approx(2.0)
    assert pool(h, m, "weighted_mean").item() == pytest.approx((1 * 1 + 2 * 2 + 3 * 3) / 6)
    assert pool(h, m, "eos").item() == 3.0  # the position; the Encoder makes it hold an appended EOS
    assert pool(h, m, "last").item() == 3.0
    assert pool(h, m, "bos").item() == 1.0


@pytest.mark.parametrize("method", POOLINGS)
def test_padding_side_does_not_matter(method):
    torch.manual_seed(0)
    lengths, T, D = [5, 2, 4], 6, 3
    seqs = [torch.randn(n, D) for n in lengths]
    left, right = torch.randn(3, T, D), torch.randn(3, T, D)  # random junk in the padding
    ml, mr = torch.zeros(3, T, dtype=torch.long), torch.zeros(3, T, dtype=torch.long)
    for b, s in enumerate(seqs):
        n = len(s)
        left[b, T - n:], ml[b, T - n:] = s, 1
        right[b, :n], mr[b, :n] = s, 1
    alone = torch.stack([pool(s[None], torch.ones(1, len(s), dtype=torch.long), method)[0] for s in seqs])
    assert_close(pool(left, ml, method), alone)
    assert_close(pool(right, mr, method), alone)


def test_unknown_pooling():
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pool(torch.zeros(1, 1, 1), torch.ones(1, 1), "max")


PAIRS = [["Retrieve the answer:", "The cat sat on the mat."], ["", "A dog ran."],
         ["Say:", "Stock markets fell sharply today."]]


def official_rule(model, tk, pairs, mode):
    """llm2vec 0.2.3's rule, written out: each text is tokenised with the model's special tokens
    (LLaMA: BOS first), instruction before text; `eos_token` appends the EOS token to the text
    (`prepare_for_tokenization`); batches are padded on the left (`get_pooling` asserts it);
    `eos_token` and `last_token` take position −1, `bos_token` the positions holding the BOS id."""
    seqs = [[tk.bos_id] + tk.encode(i) + tk.encode(t) + ([tk.eos_id] if mode == "eos_token" else [])
            for i, t in pairs]
    T = max(map(len, seqs))
    ids = torch.tensor([[tk.pad_id] * (T - len(s)) + s for s in seqs])  # left padding
    mask = torch.tensor([[0] * (T - len(s)) + [1] * len(s) for s in seqs])
    with torch.no_grad():
        hidden = model(ids, mask)  # (B, T, D)
    if mode == "bos_token":
        return hidden[ids == tk.bos_id]  # (B, D): one BOS per row
    return hidden[:, -1]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("pooling,mode", [("eos", "eos_token"), ("last", "last_token"), ("bos", "bos_token")])
def test_single_token_poolings_match_the_official_rule(tiny_encoder_folder, pooling, mode, causal, side):
    model = l2v.load_model(tiny_encoder_folder, causal=causal)
    tk = l2v.Tokenizer(tiny_encoder_folder, padding_side=side)
    got = l2v.Encoder(model, tk, pooling=pooling).encode(PAIRS, batch_size=3)
    want = official_rule(model, tk, PAIRS, mode).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_eos_is_appended_attended_and_the_only_pooled_position(tiny_encoder_folder):
    enc = l2v.Encoder(l2v.load_model(tiny_encoder_folder), l2v.Tokenizer(tiny_encoder_folder), pooling="eos",
                      max_length=12)
    tk = enc.tokenizer
    batch = enc.tokenize(["A dog ran.", "The cat sat on the mat."], instructions=["Say:", ""])
    for b in range(2):
        real = batch.input_ids[b][batch.attention_mask[b] == 1]
        assert real[-1] == tk.eos_id and (real == tk.eos_id).sum() == 1  # once, after the text, attended
    # eos differs from last: the appended token changes what is pooled (and, bidirectionally, every state)
    last = l2v.Encoder(enc.model, tk, pooling="last")
    assert not np.allclose(enc.encode(["A dog ran."]), last.encode(["A dog ran."]), atol=1e-4)
    # truncation cuts the text, not the EOS
    with pytest.warns(UserWarning, match="truncated"):
        ids, _ = enc.layout(tk.encode("Say:"), tk.encode(" ".join(["the cat sat on the mat"] * 5)))
    assert len(ids) == 12 and ids[-1] == tk.eos_id
    ids, n = enc.layout([], [])  # an empty text is the EOS token alone, not EOS twice
    assert ids == [tk.bos_id, tk.eos_id] and n == 1


def copy_with_config(src, dst, **changes):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "tokenizer_config.json").read_text())
    cfg.update(changes)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg))
    return dst


def test_eos_and_bos_need_their_tokens(tiny_encoder_folder, tmp_path):
    model = l2v.load_model(tiny_encoder_folder)
    no_bos = copy_with_config(tiny_encoder_folder, tmp_path / "no-bos", add_bos_token=False)
    with pytest.raises(ValueError, match="pooling 'bos' pools the BOS token, but this tokenizer adds none"):
        l2v.Encoder(model, l2v.Tokenizer(no_bos), pooling="bos")
    no_eos = copy_with_config(tiny_encoder_folder, tmp_path / "no-eos", eos_token=None)
    model_config = json.loads((no_eos / "config.json").read_text())  # the tokenizer's last fallback for EOS
    (no_eos / "config.json").write_text(json.dumps({**model_config, "eos_token_id": None}))
    with pytest.raises(ValueError, match="pooling 'eos' appends the tokenizer's EOS token, but this tokenizer"):
        l2v.Encoder(model, l2v.Tokenizer(no_eos), pooling="eos")
    # A tokenizer that ends texts with EOS itself gets no second one: eos pools its own.
    own = copy_with_config(tiny_encoder_folder, tmp_path / "own-eos", add_eos_token=True)
    enc = l2v.Encoder(model, l2v.Tokenizer(own), pooling="eos")
    batch = enc.tokenize(["A dog ran."])
    assert not enc.appends_eos and (batch.input_ids == enc.tokenizer.eos_id).sum() == 1
    assert batch.input_ids[0, -1] == enc.tokenizer.eos_id
