"""Grader for assignment 05: masking by its rules and statistics; the loss against transformers."""

import functools

import torch
import torch.nn.functional as F
import transformers

from grading import expect_close, expect_gradient, load, require

a05 = load("a05_mntp")
IGNORE = -100
MASK, SPECIAL, VOCAB = 7, {0, 1, 2}, 500
POINTS = {"test_labels": 3, "test_never_position_0_or_special": 3, "test_selection_rate": 2, "test_eighty_ten_ten": 3,
          "test_random_tokens": 1, "test_uses_the_generator": 1, "test_ids_not_modified": 1,
          "test_loss_matches_transformers": 6, "test_loss_gradient": 2}


def sample_ids(seed=0):
    """Packed text: half the rows start with BOS, half with an ordinary token (a document cut
    mid-way), so "never position 0" is a rule of its own, not a side effect of "never special"."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (64, 128), generator=g)
    ids[::2, 0] = 1  # BOS
    ids[torch.rand(ids.shape, generator=g) < 0.05] = 2  # EOS between packed documents
    ids[1::2, 0] = torch.randint(3, VOCAB, (32,), generator=g)  # an ordinary token at position 0
    return ids


def call(ids, prob=0.2, seed=0):
    """mask_tokens on a copy of ids; returns (the copy handed over, inputs, labels)."""
    given = ids.clone()
    inputs, labels = a05.mask_tokens(given, MASK, SPECIAL, VOCAB, prob, torch.Generator().manual_seed(seed))
    require(isinstance(inputs, torch.Tensor) and isinstance(labels, torch.Tensor),
            "mask_tokens returns two tensors (inputs, labels)")
    require(inputs.shape == ids.shape and labels.shape == ids.shape, "inputs and labels have the shape of ids")
    return given, inputs, labels


@functools.cache
def masked():
    ids = sample_ids()
    _, inputs, labels = call(ids)
    return ids, inputs, labels


def check_labels(ids, inputs, labels):
    """Every label is IGNORE or the original token; checked in the order that names the cause."""
    ignored = labels == IGNORE
    if not ignored.any():
        zeros = " (yours uses 0, which is a real token id)" if (labels == 0).any() else ""
        raise AssertionError("no label is IGNORE (-100): positions that were not selected must be IGNORE, so they "
                             f"carry no loss{zeros}")
    require(not (ignored.float().mean() > 0.99), "no position was selected: labels are (almost) all IGNORE")
    wrong = ~ignored & (labels != ids)
    if wrong.any():
        if torch.equal(labels[wrong], inputs[wrong]):
            raise AssertionError("labels hold the ORIGINAL token at selected positions (what the model must "
                                 "recover), not the input after masking")
        raise AssertionError(f"{int(wrong.sum())} labels are neither IGNORE (-100) nor the original token: a label is "
                             "ids[b, t] where position t was selected, IGNORE elsewhere")


def test_labels():
    ids, inputs, labels = masked()
    check_labels(ids, inputs, labels)


def test_never_position_0_or_special():
    ids = sample_ids()
    for prob in (0.2, 1.0):  # prob = 1 selects every position the rules allow: a rule broken shows for sure
        _, inputs, labels = call(ids, prob)
        check_labels(ids, inputs, labels)
        selected = labels != IGNORE
        require(not selected[:, 0].any(), "position 0 was selected (in a row that starts with an ordinary token): "
                "there is no position −1 to predict it from")
        special = torch.isin(ids, torch.tensor(sorted(SPECIAL)))
        require(not (selected & special).any(), "a special token (BOS/EOS/padding) was selected: never mask those")
    eligible = ~torch.isin(ids, torch.tensor(sorted(SPECIAL)))
    eligible[:, 0] = False
    require(torch.equal(selected, eligible), "with prob = 1 every ordinary token after position 0 must be selected")


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


def test_random_tokens():
    ids = sample_ids()
    _, inputs, labels = call(ids, prob=1.0)
    replaced = (labels != IGNORE) & (inputs != MASK) & (inputs != ids)
    require(replaced.any(), "no selected token was replaced by a random one (the 10% random)")
    tokens = inputs[replaced]
    require(bool((tokens < VOCAB).all() and (tokens >= 0).all()), "random tokens must come from [0, vocab_size)")
    require(tokens.unique().numel() > 20,
            f"only {tokens.unique().numel()} different random tokens for {len(tokens)} positions: draw one random "
            "token per position, not one for the whole batch")
    require(tokens.float().mean().item() > 0.35 * VOCAB, "random tokens are uniform over [0, vocab_size): yours "
            "are mostly small ids")


def test_uses_the_generator():
    ids = sample_ids()
    one = a05.mask_tokens(ids.clone(), MASK, SPECIAL, VOCAB, 0.2, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # a different global seed must not matter
    two = a05.mask_tokens(ids.clone(), MASK, SPECIAL, VOCAB, 0.2, torch.Generator().manual_seed(5))
    other = a05.mask_tokens(ids.clone(), MASK, SPECIAL, VOCAB, 0.2, torch.Generator().manual_seed(6))
    require(torch.equal(one[0], two[0]) and torch.equal(one[1], two[1]),
            "the same generator seed gave different masks: draw every random number with generator=generator")
    require(not torch.equal(one[1], other[1]), "different generator seeds gave the same masks")


def test_ids_not_modified():
    ids = sample_ids()
    given, inputs, labels = call(ids)
    require(torch.equal(given, ids), "mask_tokens changed the ids tensor it was given, in place: the caller still "
            "needs the original (work on a copy: ids.clone(), torch.where)")
    require(inputs.data_ptr() != given.data_ptr(), "inputs is the ids tensor itself: return a new tensor")


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


def test_loss_gradient():
    """The loss must train: its gradient with respect to the hidden states is transformers' own."""
    torch.manual_seed(1)
    head = torch.nn.Linear(16, VOCAB, bias=False)
    ids = sample_ids(1)[:3, :20]
    labels = torch.where(torch.rand(ids.shape) < 0.3, ids, torch.full_like(ids, IGNORE))
    labels[:, 0] = IGNORE
    hidden = torch.randn(3, 20, 16, requires_grad=True)
    logits = head(hidden)  # transformers' ForCausalLMLoss: shift, then the mean over labelled tokens
    reference = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=IGNORE)
    expect_gradient(a05.mntp_loss(hidden, labels, head), {"hidden": hidden}, reference, "mntp_loss")
