"""Shared fixtures: tiny random-initialised transformers models saved as safetensors.

Every reference check builds the model with transformers, writes it with `save_pretrained`, loads
the folder with l2v, and compares the two in fp32.
"""

import pytest
import torch

transformers = pytest.importorskip("transformers")

# name -> (config class, kwargs). Small enough to run in milliseconds, varied enough to cover every
# code path: MHA, GQA, MQA, tied embeddings, llama3 rope scaling, Mistral's sliding window, shards.
_BASE = dict(vocab_size=101, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
             num_attention_heads=4, max_position_embeddings=64, rms_norm_eps=1e-6)
TINY_CONFIGS = {
    "llama-mha": ("LlamaConfig", dict(_BASE, num_key_value_heads=4)),
    "llama-gqa": ("LlamaConfig", dict(_BASE, num_key_value_heads=2)),
    "llama-mqa": ("LlamaConfig", dict(_BASE, num_key_value_heads=1)),
    "llama-tied": ("LlamaConfig", dict(_BASE, num_key_value_heads=2, tie_word_embeddings=True)),
    "llama3-rope": ("LlamaConfig", dict(_BASE, num_key_value_heads=2, rope_parameters=dict(
        rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
        high_freq_factor=4.0, original_max_position_embeddings=16))),
    "llama-linear-rope": ("LlamaConfig", dict(_BASE, num_key_value_heads=2, rope_parameters=dict(
        rope_type="linear", rope_theta=10000.0, factor=2.0))),
    "mistral-window": ("MistralConfig", dict(_BASE, num_key_value_heads=2, sliding_window=3)),
    "llama-sharded": ("LlamaConfig", dict(_BASE, num_key_value_heads=2)),
    # Issue 19's families. Windows of 3 < the tests' 9 tokens; Gemma-2's caps are small so tanh bites.
    "qwen2": ("Qwen2Config", dict(_BASE, num_key_value_heads=2)),
    "qwen2-window": ("Qwen2Config", dict(_BASE, num_key_value_heads=2, use_sliding_window=True,
                                         sliding_window=3, max_window_layers=1)),
    "qwen3": ("Qwen3Config", dict(_BASE, num_key_value_heads=2, head_dim=16)),  # head_dim ≠ 48 / 4
    "llama-attention-bias": ("LlamaConfig", dict(_BASE, num_key_value_heads=2, attention_bias=True)),  # q, k, v, o
    "gemma": ("GemmaConfig", dict(_BASE, num_key_value_heads=1, head_dim=16)),
    "gemma2-window": ("Gemma2Config", dict(_BASE, num_key_value_heads=2, head_dim=16, sliding_window=3,
                                           query_pre_attn_scalar=24, attn_logit_softcapping=0.3,
                                           final_logit_softcapping=1.5)),
}
FAMILIES = ["llama-gqa", "mistral-window", "qwen2", "qwen3", "gemma", "gemma2-window"]  # one config per family


def make_hf_model(name: str, seed: int = 0, **overrides):
    cls_name, kwargs = TINY_CONFIGS[name]
    config = getattr(transformers, cls_name)(**{**kwargs, **overrides})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():  # HF initialises norms to ones; random values make the check stronger
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            elif n.endswith(".bias"):  # Qwen2's q/k/v biases start at zero too
                p.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """tiny_folder(name) -> (folder with the saved model, the transformers model)."""
    cache = {}

    def get(name: str):
        if name not in cache:
            model = make_hf_model(name)
            folder = tmp_path_factory.mktemp(name)
            shard = "20KB" if name == "llama-sharded" else "5GB"
            model.save_pretrained(folder, max_shard_size=shard)
            cache[name] = (folder, model)
        return cache[name]

    return get


def padded_batch(lengths, T, vocab=101, side="right", seed=0):
    """Random ids (B, T) and a padding mask with the given real lengths, padded on `side`."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        if side == "right":
            mask[b, :n] = 1
        else:
            mask[b, T - n:] = 1
    ids = ids.masked_fill(mask == 0, 0)
    return ids, mask


TINY_CORPUS = [
    "The cat sat on the mat.", "A dog ran in the park.", "Stock markets fell sharply today.",
    "Photosynthesis turns light into sugar.", "Paris is the capital of France.",
    "The quick brown fox jumps over the lazy dog.", "Rain is expected tomorrow in the north.",
] * 20


def write_tiny_tokenizer(folder, vocab_size=400, add_bos=True):
    """A byte-level BPE trained on TINY_CORPUS (the tutorials' TINY mode writes its own the same way)."""
    from common import write_tiny_tokenizer as write  # tutorials/common.py

    write(folder, TINY_CORPUS, vocab_size=vocab_size, add_bos=add_bos)


@pytest.fixture(scope="session")
def tiny_encoder_folder(tmp_path_factory):
    """A tiny random LLaMA (vocab 400) with a real tokenizer: enough for Encoder and training tests."""
    cfg = transformers.LlamaConfig(**dict(_BASE, vocab_size=400, num_key_value_heads=2,
                                          bos_token_id=1, eos_token_id=2, pad_token_id=0))
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    folder = tmp_path_factory.mktemp("tiny-encoder")
    model.save_pretrained(folder)
    write_tiny_tokenizer(folder)
    return folder


# How each family's tokenizer files say what to add: LLaMA-2 / Mistral through tokenizer_config's
# add_bos_token, Llama-3 through tokenizer.json's post-processor template alone, Qwen adds nothing
# (and has no BOS), Gemma a template *and* the key, and it declares a mask token of its own.
FAMILY_TOKENIZER = {"llama-gqa": "llama3", "mistral-window": "llama2", "qwen2": "qwen", "qwen3": "qwen",
                    "gemma": "gemma", "gemma2-window": "gemma"}


def write_family_tokenizer(folder, style: str):
    import json

    from tokenizers import AddedToken, Tokenizer, processors

    write_tiny_tokenizer(folder, vocab_size=399, add_bos=style in ("llama2", "gemma"))
    tk = Tokenizer.from_file(str(folder / "tokenizer.json"))
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    if style in ("llama3", "gemma"):
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                          special_tokens=[("<s>", tk.token_to_id("<s>"))])
    if style in ("llama3", "qwen"):
        del cfg["add_bos_token"], cfg["add_eos_token"]
    if style == "qwen":
        cfg["bos_token"] = None
    if style == "gemma":
        tk.add_special_tokens([AddedToken("<mask>", special=True, normalized=False)])
        cfg["mask_token"] = "<mask>"
    tk.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))


@pytest.fixture(scope="session")
def family_folder(tmp_path_factory):
    """family_folder(name) -> a tiny model of that family (vocab 400) with its family's tokenizer."""
    cache = {}

    def get(name: str):
        if name not in cache:
            model = make_hf_model(name, vocab_size=400, bos_token_id=1, eos_token_id=2, pad_token_id=0)
            folder = tmp_path_factory.mktemp(f"family-{name}")
            model.save_pretrained(folder)
            write_family_tokenizer(folder, FAMILY_TOKENIZER[name])
            cache[name] = folder
        return cache[name]

    return get
