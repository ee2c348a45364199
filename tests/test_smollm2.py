"""Issue 3 on the real embedded default: SmolLM2-135M-Instruct converted by `l2v fetch smollm2`.

Skipped when the converted folder is absent (CI fetches it first).
"""


import numpy as np
import pytest
import torch
from conftest import SMOLLM2_FOLDER

import l2v
from l2v.sources.fetch import SMOLLM2_GGUF

transformers = pytest.importorskip("transformers")
FOLDER = SMOLLM2_FOLDER
pytestmark = pytest.mark.skipif(not FOLDER.is_dir(), reason="run `l2v fetch smollm2` first")

SENTENCES = [
    "The capital of France is Paris.", "A man is playing a guitar on the street.",
    "Photosynthesis converts light energy into chemical energy.", "The stock market fell 3% on Monday.",
    "She forgot her umbrella and got soaked.", "Quantum computers use qubits instead of bits.",
    "The recipe calls for two cups of flour.", "He scored the winning goal in the last minute.",
    "Mount Everest is the highest mountain above sea level.", "The meeting was moved to Thursday afternoon.",
    "Cats often sleep for more than twelve hours a day.", "The new law takes effect on January 1st, 2025.",
    "Water boils at 100 degrees Celsius at sea level.", "I can't believe it's already December!",
    "The museum displays paintings from the Renaissance.", "Electric cars are becoming more affordable.",
    "A group of children are playing in the park.", "The train to Berlin departs at 7:45.",
    "Shakespeare wrote Hamlet around 1600.", "The patient was prescribed antibiotics for the infection.",
    "Our team shipped the release two days early.", "How do I reset my password?",
    "The river flooded after days of heavy rain.", "Bananas are rich in potassium.",
    "The orchestra played Beethoven's Fifth Symphony.", "Fresh bread smells wonderful in the morning.",
    "The spacecraft entered orbit around Mars.", "Please send me the report by Friday.",
    "The volcano erupted, covering the town in ash.", "Honey never spoils if stored properly.",
    "The chess champion defended her title.", "Wind turbines generate electricity from moving air.",
    "He apologised for arriving late to dinner.", "The library closes at eight on weekdays.",
    "Whales communicate using complex songs.", "Prices of houses rose sharply last year.",
    "The app crashed when I opened the settings.", "A dog is running across the snowy field.",
    "The theorem was proved by contradiction.", "Coffee consumption has increased worldwide.",
    "The bridge was closed for repairs.", "Birds migrate south for the winter.",
    "The author signed copies of her new novel.", "Tokyo is one of the largest cities in the world.",
    "Vaccines train the immune system to fight disease.", "The film won three awards at the festival.",
    "Turn left at the second traffic light.", "The glacier has retreated over the past century.",
    "Learning a new language takes patience.", "The server returned error 404: page not found.",
]


@pytest.fixture(scope="module")
def hf_from_gguf(tmp_path_factory):
    """transformers' own GGUF loader on the same file (needs accelerate)."""
    if not SMOLLM2_GGUF.local.is_file():
        pytest.skip("the GGUF file is not in the l2v cache")
    folder = tmp_path_factory.mktemp("gguf")
    (folder / SMOLLM2_GGUF.local.name).symlink_to(SMOLLM2_GGUF.local)
    kw = dict(gguf_file=SMOLLM2_GGUF.local.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw).eval()
    return model, transformers.AutoTokenizer.from_pretrained(folder, **kw)


@pytest.fixture(scope="module")
def model():
    return l2v.load_model(FOLDER)


def test_tensors_and_logits_equal_transformers_gguf_loader(model, hf_from_gguf):
    hf, _ = hf_from_gguf
    ours, theirs = model.state_dict(), hf.state_dict()
    assert set(ours) == set(theirs)
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    ids = torch.tensor([l2v.Tokenizer(FOLDER).encode("The capital of France is")])
    with torch.no_grad():
        torch.testing.assert_close(model.lm_head(model(ids)), hf(ids).logits, atol=1e-5, rtol=0)


def test_greedy_text(model):
    tk = l2v.Tokenizer(FOLDER)
    ids = torch.tensor([tk.encode("The capital of France is")])
    with torch.no_grad():
        for _ in range(2):
            nxt = model.lm_head(model(ids)[:, -1]).argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
    assert tk.decode(ids[0].tolist()) == "The capital of France is Paris."


def test_tokenizer_follows_llama_cpp_digit_split(hf_from_gguf):
    """transformers' GGUF tokenizer ignores the `smollm` pre-tokenizer (digits split one by one
    before the byte-level split); l2v follows llama.cpp. They differ only with 2+ spaces before a digit."""
    _, hf_tok = hf_from_gguf
    tk = l2v.Tokenizer(FOLDER)
    for s in SENTENCES + ["In 1987, 12 cats ate 3.14 pies!", "Hello <|im_start|> world\n\tend"]:
        assert tk.encode(s) == hf_tok(s, add_special_tokens=False).input_ids, s
    s = "total:  42"
    ours, theirs = tk.encode(s), hf_tok(s, add_special_tokens=False).input_ids
    assert ours != theirs
    assert tk.decode(ours) == tk.decode(theirs) == s
    assert [tk.decode([i]) for i in ours[-3:]] == ["  ", "4", "2"]  # llama.cpp: "  " | "4" | "2"
    assert tk.mask_token_id == 79  # "_" — LLM2Vec's mask token for LLaMA-family models


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_embeddings_equal_transformers(causal):
    encoder = l2v.Encoder.from_pretrained(FOLDER, causal=causal, pooling="mean")
    ours = encoder.encode(SENTENCES, batch_size=16)

    hf = transformers.AutoModel.from_pretrained(FOLDER, dtype=torch.float32, attn_implementation="eager").eval()
    tk = encoder.tokenizer
    ids = [tk.encode(s) for s in SENTENCES]
    T = max(map(len, ids))
    input_ids = torch.tensor([[tk.pad_id] * (T - len(x)) + x for x in ids])  # left padding
    mask = torch.tensor([[0] * (T - len(x)) + [1] * len(x) for x in ids])
    if causal:
        attn = mask
    else:  # padding-only 4-D additive mask: full attention among real tokens
        attn = ((1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min).expand(-1, 1, T, T)
    with torch.no_grad():
        hidden = hf(input_ids=input_ids, attention_mask=attn).last_hidden_state
    m = mask[..., None].float()
    theirs = ((hidden * m).sum(1) / m.sum(1)).numpy()
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cos.min() >= 0.9999, cos.min()
