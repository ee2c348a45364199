"""Issue 5: SimCSE and supervised contrastive training — the loss, the views, the frozen base, resume."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_CORPUS, simcse_run
from torch.testing import assert_close

import l2v
from l2v.contrastive import contrastive_loss
from l2v.data import read_sentences, split_sentences
from l2v.formats.peft import save_adapter
from l2v.lora import apply_lora
from l2v.simcse import alignment_uniformity, two_views
from l2v.supervised import DatasetBatches, read_triples, run_supervised
from l2v.tools.cli import main as cli


def test_loss_equals_an_independent_computation():
    torch.manual_seed(0)
    a, p, n = torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8)
    for negatives, scale in ((None, 20.0), (n, 50.0)):
        cands = p if negatives is None else torch.cat([p, n])
        sim = torch.nn.functional.cosine_similarity(a[:, None, :], cands[None, :, :], dim=-1)  # (5, 5|10)
        want = torch.stack([-torch.log_softmax(sim[i] * scale, 0)[i] for i in range(5)]).mean()
        # fp32: the loss is ~26 here, so compare relatively (7e-8 measured)
        assert_close(contrastive_loss(a, p, negatives, scale=scale), want, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        contrastive_loss(a[:1], p[:1])


@pytest.fixture
def encoder(tiny_encoder_folder):
    model = l2v.load_model(tiny_encoder_folder, causal=False)
    model.set_attention_dropout(0.3)
    return l2v.Encoder(model, l2v.Tokenizer(tiny_encoder_folder))


def test_two_views_differ_in_training_and_encode_is_deterministic(encoder):
    batch = encoder.tokenizer(TINY_CORPUS[:4])
    encoder.model.train()
    a, b = two_views(encoder, batch)
    assert a.shape == b.shape == (4, 48)
    assert not torch.allclose(a, b, atol=1e-4)  # dropout made two different views
    encoder.model.eval()
    with torch.no_grad():
        a, b = two_views(encoder, batch)
    assert torch.equal(a, b)
    assert np.array_equal(encoder.encode(TINY_CORPUS[:4]), encoder.encode(TINY_CORPUS[:4]))
    stats = alignment_uniformity(encoder, batch)
    assert stats["alignment"] > 0 and stats["uniformity"] < 0


def test_sentences(tmp_path):
    assert split_sentences('He left. "Why?" she asked. It was 3 p.m. now. Done!') == [
        "He left.", '"Why?" she asked.', "It was 3 p.m. now.", "Done!"]
    (tmp_path / "one.txt").write_text("Only one sentence here.\n\n")
    with pytest.raises(ValueError, match="1 sentence\\(s\\); contrastive training needs at least 2"):
        read_sentences(tmp_path / "one.txt")


def test_only_lora_trains_and_base_is_bit_identical(tiny_encoder_folder, sentence_file, tmp_path):
    run = simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "out")
    assert [r["step"] for r in run if "loss" in r] == [1, 2, 3, 4]
    assert {"alignment", "uniformity", "accuracy"} <= set(run[-1]["eval"])
    # The adapter changes the encoder; merging it back leaves base weights untouched otherwise.
    base = l2v.load_model(tiny_encoder_folder).state_dict()
    enc = l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=[tmp_path / "out"])
    merged = enc.model.state_dict()
    assert all(torch.equal(base[k], merged[k]) for k in base if "proj" not in k)  # norms, embeddings
    assert any(not torch.equal(base[k], merged[k]) for k in base if "proj" in k)


def test_training_touches_only_lora(encoder):
    apply_lora(encoder.model, r=4, alpha=8)
    before = {k: v.clone() for k, v in encoder.model.state_dict().items() if "lora_" not in k}
    encoder.model.train()
    opt = torch.optim.AdamW([p for p in encoder.model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        a, b = two_views(encoder, encoder.tokenizer(TINY_CORPUS[:4]))
        contrastive_loss(a, b).backward()
        assert all(p.grad is None for n, p in encoder.model.named_parameters() if "lora_" not in n)
        opt.step()
        opt.zero_grad()
    after = encoder.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_simcse_resume_is_exact(tiny_encoder_folder, sentence_file, tmp_path, monkeypatch):
    straight = [r["loss"] for r in simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "a", steps=6)
                if "loss" in r]
    # Pretend the run died after step 3: keep the step-3 checkpoint, drop the rest of the log.
    import l2v.runtime.checkpoints as tr

    real_save = tr.save_checkpoint
    monkeypatch.setattr(tr, "save_checkpoint", lambda *a, **k: real_save(*a, **k) if a[4] <= 3 else None)
    simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "c", steps=6, save_every=3)
    monkeypatch.undo()
    resumed = [r["loss"] for r in simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "c", steps=6,
                                         save_every=3, resume=True) if "loss" in r]
    assert_close(torch.tensor(resumed), torch.tensor(straight), atol=1e-6, rtol=0)


def test_simcse_bad_input(tiny_encoder_folder, sentence_file, tmp_path):
    with pytest.raises(ValueError, match="--batch-size must be at least 2"):
        simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "o", batch_size=1)
    with pytest.raises(FileNotFoundError, match="MNTP adapter folder not found"):
        simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "o", adapter=tmp_path / "no-mntp")


def test_simcse_starts_from_the_mntp_adapter(tiny_encoder_folder, sentence_file, tmp_path):
    mntp = apply_lora(l2v.load_model(tiny_encoder_folder), r=4, alpha=8)
    torch.nn.init.normal_(mntp.model.layers[0].self_attn.q_proj.lora_B.weight)
    save_adapter(mntp, tmp_path / "mntp")
    simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "simcse", adapter=tmp_path / "mntp", steps=2)
    both = l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=[tmp_path / "mntp", tmp_path / "simcse"])
    only = l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=[tmp_path / "simcse"])
    assert not np.allclose(both.encode("The cat sat."), only.encode("The cat sat."), atol=1e-4)


def write_triples(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def triple(i, dataset):
    return {"query": f"where did the cat {i} sit?", "positive": f"The cat {i} sat on the mat.",
            "negative": f"A dog {i} ran in the park.", "dataset": dataset, "instruction": "Retrieve the answer:"}


def test_supervised_runs_with_one_dataset_per_batch(tiny_encoder_folder, tmp_path):
    rows = [triple(i, "a") for i in range(10)] + [triple(i, "b") for i in range(6)]
    data = write_triples(tmp_path / "t.jsonl", rows)
    batches = DatasetBatches([r["dataset"] for r in rows], batch_size=4, seed=0)
    assert batches.per_epoch == 2 + 1
    for step in range(9):
        assert len({rows[i]["dataset"] for i in batches.indices(step, 0)}) == 1
    run = run_supervised(tiny_encoder_folder, None, data, tmp_path / "out", steps=3, batch_size=4, max_length=24)
    assert len([r for r in run if "loss" in r]) == 3 and "accuracy" in run[-1]["eval"]
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


def test_supervised_watches_each_datasets_loss_apart(tiny_encoder_folder, tmp_path, monkeypatch):
    """Mined pairs: title batches cost 0.2, sentence batches 2.0, so against the mix's running loss every
    hard batch looked like a blow-up ("lower the learning rate?"). Each dataset's loss is watched alone."""
    import warnings

    import l2v.supervised

    rows = [triple(i, "a") for i in range(8)] + [triple(i, "b") for i in range(8)]
    data = write_triples(tmp_path / "t.jsonl", rows)
    first = rows[DatasetBatches([r["dataset"] for r in rows], batch_size=2, seed=7).indices(0, 0)[0]]["dataset"]
    real = l2v.supervised.SupervisedData.loss

    def loss(self, model, batch):  # the first step's dataset easy, the other 50 above it
        value, metrics = real(self, model, batch)
        return (value * 0.01 if self.triples[batch[0]].dataset == first else value + 50), metrics

    monkeypatch.setattr(l2v.supervised.SupervisedData, "loss", loss)
    settings = dict(steps=8, batch_size=2, max_length=24, seed=7)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*far above its running value")
        run_supervised(tiny_encoder_folder, None, data, tmp_path / "a", **settings)
    monkeypatch.setattr(l2v.supervised.SupervisedData, "group", lambda self, step: None)  # one running loss
    with pytest.warns(UserWarning, match="far above its running value"):
        run_supervised(tiny_encoder_folder, None, data, tmp_path / "b", **settings)


def test_supervised_bad_input(tiny_encoder_folder, tmp_path):
    bad = write_triples(tmp_path / "bad.jsonl", [triple(0, "a"), {"query": "q", "positive": "p"}])
    with pytest.raises(ValueError, match="bad.jsonl, line 2: missing field 'negative'"):
        read_triples(bad)
    few = write_triples(tmp_path / "few.jsonl", [triple(i, "a") for i in range(3)])
    with pytest.raises(ValueError, match="no dataset has a full batch of 4 rows \\(a: 3\\)"):
        run_supervised(tiny_encoder_folder, None, few, tmp_path / "o", steps=1, batch_size=4)


def test_cli_simcse(tiny_encoder_folder, sentence_file, tmp_path, capsys):
    cli(["simcse", "--model", str(tiny_encoder_folder), "--data", str(sentence_file), "--out", str(tmp_path / "o"),
         "--steps", "2", "--batch-size", "3", "--max-length", "16"])
    assert "SimCSE: 2 steps" in capsys.readouterr().out
    assert l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=[tmp_path / "o"]).encode("x").shape == (48,)


def test_alignment_and_uniformity_follow_their_definitions():
    import math

    from l2v.simcse import alignment, uniformity

    g = torch.Generator().manual_seed(0)
    x, y = (torch.nn.functional.normalize(torch.randn(6, 5, generator=g), dim=-1) for _ in range(2))
    expected_alignment = sum(((x[i] - y[i]) ** 2).sum().item() for i in range(6)) / 6
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    expected_uniformity = math.log(sum(math.exp(-2 * ((x[i] - x[j]) ** 2).sum().item()) for i, j in pairs) / len(pairs))
    assert alignment(x, y).item() == pytest.approx(expected_alignment, rel=1e-6)
    assert uniformity(x).item() == pytest.approx(expected_uniformity, rel=1e-6)


def test_matryoshka_trains_every_nested_size(tiny_encoder_folder, sentence_file, tmp_path):
    """Issue 38: --matryoshka K trains the loss at each halving of the embedding down to K, averaged; a
    Pieces loss is called once per size, on the leading dimensions."""
    import torch

    from l2v.contrastive import contrastive_loss, matryoshka, nested_dims
    from l2v.train import Pieces

    assert nested_dims(576, 64) == [576, 288, 144, 72] and nested_dims(48, None) == [48]
    with pytest.raises(ValueError, match="matryoshka 64 is larger than the embedding"):
        nested_dims(48, 64)
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(6, 48, generator=g) for _ in range(3))
    want = sum(contrastive_loss(a[:, :d], p[:, :d], n[:, :d], scale=50.0) for d in (48, 24, 12)) / 3
    torch.testing.assert_close(matryoshka(contrastive_loss, [48, 24, 12])(a, p, n, scale=50.0), want)
    assert matryoshka(contrastive_loss, [48]) is contrastive_loss  # one size: the plain loss, untouched

    widths = []

    def recording_loss(anchors, positives, negatives=None, scale=20.0):
        widths.append(anchors.shape[1])
        return contrastive_loss(anchors, positives, negatives, scale=scale)

    simcse_run(tiny_encoder_folder, sentence_file, tmp_path / "m", steps=2, matryoshka=12,
               pieces=Pieces(contrastive_loss=recording_loss))
    assert widths[:6] == [48, 24, 12] * 2, widths
