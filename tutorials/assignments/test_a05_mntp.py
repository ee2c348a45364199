"""Grader for assignment 05: masking by its rules and statistics; the loss against transformers."""

import functools

import torch
import torch.nn.functional as F
import transformers

from grading import expect_close, load, require

a05 = load("a05_mntp")
IGNORE = -100
MASK, SPECIAL, VOCAB = 7, {0, 1, 2}, 500


def sample_ids(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (64, 128), generator=g)
    ids[:, 0] = 1  # BOS
    ids[torch.rand(ids.shape, generator=g) < 0.05] = 2  # EOS between packed documents
    return ids


@functools.cache
def masked():
    ids = sample_ids()
    inputs, labels = a05.mask_tokens(ids.clone(), MASK, SPECIAL, VOCAB, 0.2, torch.Generator().manual_seed(0))
    return ids, inputs, labels


def test_labels():
    ids, inputs, labels = masked()
    require(inputs.shape == ids.shape and labels.shape == ids.shape, "inputs and labels have the shape of ids")
    selected = labels != IGNORE
    require(selected.any(), "no position was selected: labels are all IGNORE")
    require(torch.equal(labels[selected], ids[selected]),
            "labels hold the ORIGINAL token at selected positions (what the model must recover), not the input")
    require(not selected[:, 0].any(), "position 0 was selected: there is no position −1 to predict it from")
    special = torch.isin(ids, torch.tensor(sorted(SPECIAL)))
    require(not (selected & special).any(), "a special token (BOS/EOS/padding) was selected: never mask those")
    require(not (selected.float().mean() > 0.9),
            "almost every position has a label: unselected positions must be IGNORE (-100), so they carry no loss")


def test_selection_rate():
    ids, _, labels = masked()
    eligible = ~torch.isin(ids, torch.tensor(sorted(SPECIAL)))
    eligible[:, 0] = False
    rate = (labels != IGNORE)[eligible].float().mean().item()
    require(abs(rate - 0.2) < 0.02, f"{rate:.3f} of the eligible positions were selected; expected prob = 0.2 "
            "(select each eligible position independently, e.g. torch.bernoulli or torch.rand < prob)")


def test_eighty_ten_ten():
    ids, inputs, labels = masked()
    selected = labels != IGNORE
    require(torch.equal(inputs[~selected], ids[~selected]), "positions that were not selected must stay unchanged")
    to_mask = (inputs[selected] == MASK).float().mean().item()
    unchanged = (inputs[selected] == ids[selected]).float().mean().item()
    random_ = 1 - to_mask - unchanged
    if to_mask > 0.97:
        raise AssertionError("every selected token became the mask token — that is the Mistral recipe; "
                             "here use BERT's 80% mask / 10% random / 10% unchanged")
    require(abs(to_mask - 0.8) < 0.04 and abs(random_ - 0.1) < 0.04 and abs(unchanged - 0.1) < 0.04,
            f"of the selected: {to_mask:.2f} mask token, {random_:.2f} random, {unchanged:.2f} unchanged; "
            "expected 0.8 / 0.1 / 0.1 (one uniform draw per position can decide all three)")
    replaced = selected & (inputs != MASK) & (inputs != ids)
    require(bool((inputs[replaced] < VOCAB).all() and (inputs[replaced] >= 0).all()),
            "random tokens must come from [0, vocab_size)")


def test_uses_the_generator():
    ids = sample_ids()
    one = a05.mask_tokens(ids.clone(), MASK, SPECIAL, VOCAB, 0.2, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # a different global seed must not matter
    two = a05.mask_tokens(ids.clone(), MASK, SPECIAL, VOCAB, 0.2, torch.Generator().manual_seed(5))
    other = a05.mask_tokens(ids.clone(), MASK, SPECIAL, VOCAB, 0.2, torch.Generator().manual_seed(6))
    require(torch.equal(one[0], two[0]) and torch.equal(one[1], two[1]),
            "the same generator seed gave different masks: draw every random number with generator=generator")
    require(not torch.equal(one[1], other[1]), "different generator seeds gave the same masks")
    require(torch.equal(ids, sample_ids()), "mask_tokens changed its input tensor in place: work on a copy")


def test_loss_matches_transformers():
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    ids = sample_ids()[:4, :32]
    g = torch.Generator().manual_seed(0)
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, torch.full_like(ids, IGNORE))
    labels[:, 0] = IGNORE
    with torch.no_grad():
        out = hf(ids, labels=labels, output_hidden_states=True)  # transformers shifts: state i−1 → token i
        hidden = out.hidden_states[-1]
        ours = a05.mntp_loss(hidden, labels, hf.lm_head)
        where = labels != IGNORE
        bert = F.cross_entropy(hf.lm_head(hidden[where]), labels[where])
        w = labels[:, :-1] != IGNORE
        backwards = F.cross_entropy(hf.lm_head(hidden[:, 1:][w]), labels[:, :-1][w])
        per_token = F.cross_entropy(hf.lm_head(hidden[:, :-1]).transpose(1, 2), labels[:, 1:], reduction="sum")
    expect_close(torch.as_tensor(ours), out.loss, "mntp_loss", mistakes={
        "that is BERT's loss: position i predicting token i. MNTP predicts token i from the state at i − 1 "
        "(hidden[:, :-1] against labels[:, 1:])": bert,
        "shifted the wrong way: the state at i − 1 predicts the token at i, so drop the LAST hidden state and "
        "the FIRST label": backwards,
        "the loss is the mean over labelled tokens, not the sum": per_token,
    })
