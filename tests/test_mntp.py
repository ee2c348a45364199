"""Issue 4: MNTP — the loss against transformers, masking statistics, the training loop's resume."""

import json
import math

import pytest
import torch
from conftest import FAMILIES, TINY_CORPUS, losses, mntp_run
from torch.testing import assert_close

import l2v
from l2v.data import read_texts
from l2v.mntp import FAMILY_MASKING, IGNORE, mask_tokens, mntp_loss, pack_blocks, run_mntp
from l2v.sources.fetch import wiki_path
from l2v.train import NonFiniteLossError

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_loss_equals_transformers_causal_lm_loss(family_folder, name, causal):
    folder = family_folder(name)
    model = l2v.load_model(folder, causal=causal)
    tokenizer = l2v.Tokenizer(folder)
    blocks = pack_blocks(tokenizer, TINY_CORPUS, 16)
    masking = FAMILY_MASKING[model.config.model_type]
    inputs, labels = mask_tokens(blocks[:4], tokenizer, masking, torch.Generator().manual_seed(0))
    assert (labels != IGNORE).sum() > 5
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    T = inputs.shape[1]
    mask = None if causal else torch.zeros(4, 1, T, T)  # bidirectional: a 4-D mask that hides nothing
    with torch.no_grad():
        ours, _ = mntp_loss(model, inputs, labels)
        theirs = hf(input_ids=inputs, attention_mask=mask, labels=labels).loss  # HF shifts labels the same way
    assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_masking_statistics(tokenizer):
    ids = torch.randint(3, tokenizer.vocab_size, (400, 64))
    ids[:, 0] = tokenizer.bos_id
    ids[:, 30] = tokenizer.eos_id
    inputs, labels = mask_tokens(ids, tokenizer, FAMILY_MASKING["llama"], torch.Generator().manual_seed(0))
    selected = labels != IGNORE
    maskable = 400 * (64 - 2)  # not BOS/position 0, not EOS
    assert not selected[:, 0].any() and not selected[:, 30].any()
    assert selected.sum() / maskable == pytest.approx(0.2, abs=0.01)
    assert torch.equal(labels[selected], ids[selected])
    became_mask = (inputs == tokenizer.mask_token_id) & selected
    unchanged = (inputs == ids) & selected
    n = selected.sum()
    assert became_mask.sum() / n == pytest.approx(0.8, abs=0.02)
    assert unchanged.sum() / n == pytest.approx(0.1 + 0.1 / tokenizer.vocab_size, abs=0.02)
    assert torch.equal(inputs[~selected], ids[~selected])  # nothing else is touched


def test_mistral_masking_is_all_mask_tokens(tokenizer):
    ids = torch.randint(3, tokenizer.vocab_size, (200, 32))
    inputs, labels = mask_tokens(ids, tokenizer, FAMILY_MASKING["mistral"], torch.Generator().manual_seed(1))
    selected = labels != IGNORE
    assert selected.sum() / (200 * 31) == pytest.approx(0.8, abs=0.01)
    assert (inputs[selected] == tokenizer.mask_token_id).all()


def test_packing(tokenizer):
    blocks = pack_blocks(tokenizer, ["The cat sat.", "A dog ran."], 4)
    stream = [tokenizer.bos_id] + tokenizer.encode("The cat sat.") + [tokenizer.eos_id] + \
        [tokenizer.bos_id] + tokenizer.encode("A dog ran.") + [tokenizer.eos_id]
    assert blocks.shape == (len(stream) // 4, 4)
    assert blocks.flatten().tolist() == stream[: blocks.numel()]
    with pytest.raises(ValueError, match="shorter than one block of 512"):
        pack_blocks(tokenizer, ["short"], 512)


def test_bad_data_files(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="no text in"):
        read_texts(tmp_path / "empty.txt")
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"txt": "oops"}\n')
    with pytest.raises(ValueError, match="bad.jsonl, line 2: missing field 'text'"):
        read_texts(tmp_path / "bad.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n\n{"text": \n')
    with pytest.raises(ValueError, match="broken.jsonl, line 3: not valid JSON"):
        read_texts(tmp_path / "broken.jsonl")
    with pytest.raises(FileNotFoundError, match="data file not found"):
        read_texts(tmp_path / "missing.txt")


def test_resume_is_exact(tiny_encoder_folder, tokenizer, blocks, tmp_path):
    straight = losses(mntp_run(tiny_encoder_folder, tokenizer, blocks, tmp_path / "a"))

    def interrupt_at_4(step, loss, model):
        if step == 3:
            raise KeyboardInterrupt  # Ctrl-C during step 4: steps 1-3 are checkpointed
        return loss

    with pytest.raises(KeyboardInterrupt):
        mntp_run(tiny_encoder_folder, tokenizer, blocks, tmp_path / "b", save_every=100, loss_hook=interrupt_at_4)
    state = torch.load(tmp_path / "b" / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 3
    resumed = losses(mntp_run(tiny_encoder_folder, tokenizer, blocks, tmp_path / "b", resume=True))
    assert len(straight) == len(resumed) == 6
    assert_close(torch.tensor(resumed), torch.tensor(straight), atol=1e-6, rtol=0)
    logged = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 4, 5, 6]  # no duplicates after resume
    assert (tmp_path / "b" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "b" / "adapter_config.json").is_file()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_encoder_folder, tokenizer, blocks, tmp_path):
    def nan_at_5(step, loss, model):
        return loss * float("nan") if step == 4 else loss

    with pytest.raises(NonFiniteLossError, match="loss is nan at step 5"):
        mntp_run(tiny_encoder_folder, tokenizer, blocks, tmp_path, save_every=2, loss_hook=nan_at_5)
    state = torch.load(tmp_path / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 4


@pytest.mark.skipif(not wiki_path().is_file(), reason="run `l2v fetch wiki` first")
def test_tiny_model_loss_falls_on_wiki(tiny_encoder_folder, tmp_path, capsys):
    texts = read_texts("wiki")[:200]
    (tmp_path / "wiki.txt").write_text("\n".join(texts))
    records = run_mntp(tiny_encoder_folder, tmp_path / "wiki.txt", tmp_path / "out", steps=30, batch_size=8,
                       max_length=64, lr=1e-2, eval_every=30, seed=0)
    train_losses = losses(records)
    assert sum(train_losses[-5:]) / 5 < sum(train_losses[:5]) / 5 - 0.05
    evals = [r["eval"] for r in records if "eval" in r]
    assert evals[-1]["loss"] < evals[0]["loss"] - 0.1  # measured: 5.97 → 5.82
    assert evals[-1]["accuracy"] > evals[0]["accuracy"] + 0.05  # measured: 0.003 → 0.108
    assert "MNTP: 30 steps" in capsys.readouterr().out
    enc = l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=[tmp_path / "out"])
    assert enc.encode("a trained encoder").shape == (48,)


def test_cli_mntp_with_cpu_autocast(tiny_encoder_folder, tmp_path):
    """`l2v mntp --autocast`: bf16 autocast on CPU through the whole loop, LoRA dropout on."""
    from l2v.tools.cli import main as cli

    (tmp_path / "texts.txt").write_text("\n".join(TINY_CORPUS))
    code = cli(["mntp", "--model", str(tiny_encoder_folder), "--data", str(tmp_path / "texts.txt"),
                "--out", str(tmp_path / "out"), "--steps", "2", "--batch-size", "4", "--max-length", "32",
                "--autocast"])
    assert not code
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 2 and all(math.isfinite(r["loss"]) for r in steps)
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
