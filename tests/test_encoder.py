"""Issue 3: Tokenizer, Encoder and `l2v encode`, on a tiny random model with a real tokenizer."""

import numpy as np
import pytest
import torch

import l2v
from l2v.runtime.checks import L2VError
from l2v.tools.cli import main as cli


@pytest.fixture(scope="module")
def encoder(tiny_encoder_folder):
    return l2v.Encoder.from_pretrained(tiny_encoder_folder, max_length=32)


def test_tokenizer_layout_and_padding(tiny_encoder_folder):
    tk = l2v.Tokenizer(tiny_encoder_folder)  # add_bos_token: true in this folder
    batch = tk(["The cat sat.", "A dog"], instructions=["Say:", ""])
    ids0 = [tk.bos_id] + tk.encode("Say:") + tk.encode("The cat sat.")
    T = batch.input_ids.shape[1]
    assert T == len(ids0)
    assert batch.input_ids[0].tolist() == ids0
    n1 = 1 + len(tk.encode("A dog"))
    # left padding: padding first, then BOS, then text; BOS and instruction are not pooled
    assert batch.attention_mask[1].tolist() == [0] * (T - n1) + [1] * n1
    assert batch.pool_mask[1].tolist() == [0] * (T - n1 + 1) + [1] * (n1 - 1)
    assert batch.pool_mask[0].tolist() == [0] * (1 + len(tk.encode("Say:"))) + [1] * len(tk.encode("The cat sat."))
    right = l2v.Tokenizer(tiny_encoder_folder, padding_side="right")(["A dog", "The cat sat."])
    T2 = 1 + len(tk.encode("The cat sat."))
    assert right.attention_mask[0].tolist() == [1] * n1 + [0] * (T2 - n1)
    assert right.pool_mask[0].tolist() == [0] + [1] * (n1 - 1) + [0] * (T2 - n1)
    assert right.input_ids[0, n1:].eq(tk.pad_id).all()


def test_mask_token_is_underscore(tiny_encoder_folder):
    tk = l2v.Tokenizer(tiny_encoder_folder)
    assert tk.decode([tk.mask_token_id]) == "_"
    with pytest.raises(ValueError, match="not a single token"):
        l2v.Tokenizer(tiny_encoder_folder, mask_token="zebra crossing")


def test_shapes_and_single_string(encoder):
    D = encoder.dim
    assert encoder.encode("The cat sat.").shape == (D,)
    assert encoder.encode(["The cat sat.", "A dog"]).shape == (2, D)
    empty = encoder.encode([])
    assert empty.shape == (0, D) and empty.dtype == np.float32


def test_length_sorting_keeps_input_order(encoder):
    texts = ["A dog.", "The quick brown fox jumps over the lazy dog.", "Rain", "Paris is the capital of France."]
    batched = encoder.encode(texts, batch_size=3)
    alone = np.stack([encoder.encode(t) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_instruction_is_attended_but_not_pooled(encoder, tiny_encoder_folder):
    instr, text = "Retrieve the passage:", "The cat sat on the mat."
    got = encoder.encode([[instr, text]])[0]
    assert np.allclose(encoder.encode(text, instruction=instr), got)  # the two spellings agree
    assert not np.allclose(encoder.encode(text), got, atol=1e-4)  # bidirectional: text sees the instruction
    # By hand: run the joined ids, average over the text's positions only.
    tk = encoder.tokenizer
    p, t = [tk.bos_id] + tk.encode(instr), tk.encode(text)
    with torch.no_grad():
        hidden = encoder.model(torch.tensor([p + t]), causal=False)[0]
    np.testing.assert_allclose(got, hidden[len(p):].mean(0).numpy(), atol=1e-5)


def test_causal_and_pooling_options(tiny_encoder_folder):
    texts = ["The cat sat on the mat.", "A dog ran."]
    causal = l2v.Encoder.from_pretrained(tiny_encoder_folder, causal=True, pooling="last")
    tk = causal.tokenizer
    with torch.no_grad():
        ids = torch.tensor([[tk.bos_id] + tk.encode(texts[0])])
        last = causal.model(ids, causal=True)[0, -1].numpy()
    np.testing.assert_allclose(causal.encode(texts)[0], last, atol=1e-5)
    with pytest.raises(ValueError, match="unknown pooling"):
        l2v.Encoder.from_pretrained(tiny_encoder_folder, pooling="cls")


def test_normalize_and_similarity(encoder):
    e = encoder.encode(["The cat sat.", "A dog ran.", "Stock markets fell."], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)
    sim = encoder.similarity(e[:1], e)
    assert sim.shape == (1, 3) and sim[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert isinstance(encoder.encode(["x"], convert_to_numpy=False), torch.Tensor)


def test_truncation_warns_once(encoder):
    long = " ".join(["the cat sat on the mat"] * 40)
    with pytest.warns(UserWarning, match="truncated") as record:
        encoder.tokenizer._warned_truncation = False
        a = encoder.encode([long, long + " again"])
    assert len([r for r in record if "truncated" in str(r.message)]) == 1
    np.testing.assert_allclose(a[0], a[1], atol=1e-5)  # both cut to the same first 32 tokens


def test_empty_string_is_encoded_as_eos(encoder):
    tk = encoder.tokenizer
    with torch.no_grad():
        hidden = encoder.model(torch.tensor([[tk.bos_id, tk.eos_id]]), causal=False)[0]
    np.testing.assert_allclose(encoder.encode(""), hidden[1].numpy(), atol=1e-5)


@pytest.mark.parametrize("bad", [[1, 2], [["only one"]], [["a", "b", "c"]], 42, None])
def test_bad_input_types(encoder, bad):
    with pytest.raises(TypeError, match="list of \\[instruction, text\\] pairs"):
        encoder.encode(bad)


def test_wrong_model_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        l2v.Encoder.from_pretrained(tmp_path / "missing")


def test_cli_encode(tiny_encoder_folder, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("The cat sat.\nA dog ran.\n")
    cli(["encode", "--model", str(tiny_encoder_folder), "--input", str(tmp_path / "in.txt"),
         "--output", str(tmp_path / "out.npy"), "--pooling", "mean"])
    got = np.load(tmp_path / "out.npy")
    want = l2v.Encoder.from_pretrained(tiny_encoder_folder).encode(["The cat sat.", "A dog ran."])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert "2 texts" in capsys.readouterr().out


def test_bf16_autocast_is_close_to_fp32(encoder, tiny_encoder_folder):
    texts = ["The cat sat on the mat.", "Stock markets fell sharply today."]
    fast = l2v.Encoder.from_pretrained(tiny_encoder_folder, max_length=32, autocast=True).encode(texts)
    exact = encoder.encode(texts)
    cos = (fast * exact).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(exact, axis=1)
    assert fast.dtype == np.float32 and cos.min() > 0.99
    assert not np.array_equal(fast, exact)  # it really ran in bf16


SHARED_TEXTS = ["The cat sat on the mat.", "", "A dog", "the dog ran " * 20, ["Say this:", "hello there"], "x"]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("max_length", [12, 64])  # 12: some texts are cut, and the EOS must take the last place
def test_one_causal_pass_serves_every_pooling(tiny_encoder_folder, side, max_length):
    """encode_poolings = a separate encode() per pooling (eos appends EOS; last/mean do not)."""
    poolings = ["eos", "last", "mean", "weighted_mean"]
    shared = l2v.Encoder.from_pretrained(tiny_encoder_folder, causal=True, max_length=max_length)
    shared.tokenizer.padding_side = side
    got = shared.encode_poolings(SHARED_TEXTS, poolings, batch_size=2)
    for pooling in poolings:
        alone = l2v.Encoder.from_pretrained(tiny_encoder_folder, causal=True, pooling=pooling, max_length=max_length)
        alone.tokenizer.padding_side = side
        want = alone.encode(SHARED_TEXTS, batch_size=3)
        np.testing.assert_allclose(got[pooling], want, atol=2e-5, rtol=1e-5, err_msg=pooling)
    # What could go wrong if the EOS were pooled into the mean, or "last" took the EOS: they differ here.
    assert not np.allclose(got["eos"], got["last"], atol=1e-3)


def test_shared_pass_needs_a_causal_model(tiny_encoder_folder):
    bi = l2v.Encoder.from_pretrained(tiny_encoder_folder, causal=False)
    with pytest.raises(L2VError, match="needs a causal model"):
        bi.encode_poolings(["a b"], ["eos", "mean"])
    with pytest.raises(L2VError, match="cannot share a pass"):
        l2v.Encoder.from_pretrained(tiny_encoder_folder, causal=True).encode_poolings(["a b"], ["bos", "mean"])


def test_evaluate_poolings_equals_separate_evaluations(tiny_encoder_folder, tmp_path):
    from conftest import write_folder

    from l2v.evaluate import evaluate_model, evaluate_model_poolings

    words = "cat dog sat mat ran the a on hello there friend big small red blue".split()
    rng = np.random.default_rng(0)
    text = lambda: " ".join(rng.choice(words, rng.integers(1, 9)))  # noqa: E731
    sts = [{"sentence1": text(), "sentence2": text(), "score": float(i % 5)} for i in range(30)]
    cls = [{"text": text(), "label": i % 2, "split": "train" if i < 20 else "test"} for i in range(40)]
    tasks = [write_folder(tmp_path, "sts", "sts", {"data.jsonl": sts}),
             write_folder(tmp_path, "cls", "classification", {"data.jsonl": cls}, samples_per_label=4)]
    got = evaluate_model_poolings(tiny_encoder_folder, ["eos", "mean"], tasks=tasks, show_progress=False)
    for pooling in ("eos", "mean"):
        want = evaluate_model(tiny_encoder_folder, causal=True, pooling=pooling, tasks=tasks, show_progress=False)
        assert got[pooling]["shared_pass"] == ["eos", "mean"] and got[pooling]["max_length"] == 512
        assert got[pooling]["appends_eos"] == want["appends_eos"] == (pooling == "eos")
        for a, b in zip(got[pooling]["tasks"], want["tasks"]):
            assert a["task"] == b["task"] and a["main_score"] == pytest.approx(b["main_score"], abs=1e-4)
    assert got["eos"]["tasks"][0]["main_score"] != pytest.approx(got["mean"]["tasks"][0]["main_score"], abs=1e-3)


def test_an_instruction_and_its_text_are_never_read_as_one_word(tiny_encoder_folder):
    """The instruction rule: `instruction + text` tokenised as one string, with a ":" after an instruction
    that ends in a letter or digit — "…the question" + "How" must not become "questionHow"."""
    from l2v.tokenizer import instruction_prefix

    assert instruction_prefix("Find the news article") == "Find the news article:"
    assert [instruction_prefix(x) for x in ("Say:", "query: ", "", "Item 2")] == ["Say:", "query: ", "", "Item 2:"]
    tok = l2v.Tokenizer(tiny_encoder_folder)
    (prefix, body), = tok.encode_pairs(["Find the news article"], ["Paris is in France."])
    assert prefix == tok.encode("Find the news article:") and body == tok.encode("Paris is in France.")
