"""What the tests share: tiny random-initialised transformers models saved as safetensors, and the
harnesses several test files use (an MNTP run through the loop, a SimCSE run, task folders, a
synthetic GGUF file). Test files import these from here, never from each other.

Every reference check builds the model with transformers, writes it with `save_pretrained`, loads
the folder with l2v, and compares the two in fp32.
"""

from pathlib import Path

import pytest
import torch

from l2v.sources.fetch import SMOLLM2_DIRNAME

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


# ---------------------------------------------------------------- shared test harnesses


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder_folder):
    import l2v

    return l2v.Tokenizer(tiny_encoder_folder)


@pytest.fixture(scope="module")
def blocks(tokenizer):
    """TINY_CORPUS packed into 16-token MNTP blocks."""
    from l2v.mntp import pack_blocks

    return pack_blocks(tokenizer, TINY_CORPUS, 16)


@pytest.fixture
def sentence_file(tmp_path):
    path = tmp_path / "sentences.txt"
    path.write_text("\n".join(dict.fromkeys(TINY_CORPUS)) + "\n")
    return path


def losses(records):
    return [r["loss"] for r in records if "loss" in r]


def mntp_run(folder, tokenizer, blocks, out, *, steps=6, save_every=3, eval_every=0, loss_hook=None, eval_hook=None,
             resume=False, overwrite=False, lr=1e-2, r=4):
    """A small MNTP run through the shared loop (train.py), for resume and failure tests; the hooks may
    interfere: loss_hook(step, loss, model) -> loss, eval_hook(n-th eval)."""
    import l2v
    from l2v.lora import apply_lora
    from l2v.mntp import FAMILY_MASKING, MNTPData, mntp_loss
    from l2v.settings import LoRASettings, TrainSettings
    from l2v.train import Stage, train

    model = l2v.load_model(folder, causal=False)
    torch.manual_seed(0)
    apply_lora(model, r=r, alpha=8, dropout=0.1, fast=True)  # as training does; dropout on: the RNG must resume too
    data = MNTPData(blocks, tokenizer, FAMILY_MASKING["llama"], batch_size=4, grad_accum=2, seed=0, eval_blocks=4)
    calls, evals = {"n": 0}, {"n": 0}

    def loss_fn(model, batch):
        step = calls["n"] // 2
        calls["n"] += 1
        loss, acc = mntp_loss(model, *batch)
        if loss_hook:
            loss = loss_hook(step, loss, model)
        return loss, {"accuracy": acc.item(), "tokens": batch[0].numel()}

    def eval_fn(model):
        evals["n"] += 1
        if eval_hook:
            eval_hook(evals["n"])
        return data.evaluate(model)

    settings = TrainSettings(steps=steps, batch_size=4, grad_accum=2, lr=lr, warmup_steps=2, save_every=save_every,
                             eval_every=eval_every, seed=0, lora=LoRASettings(r=r, alpha=8, dropout=0.1))
    return train(model, Stage(batch=data.batch, loss=loss_fn, evaluate=eval_fn), settings, out, resume=resume,
                 overwrite=overwrite)


def simcse_run(folder, data, out, **kw):
    """A small SimCSE run: run_simcse with tiny settings (any of them overridable)."""
    from l2v.simcse import run_simcse

    kw = dict(steps=4, batch_size=4, max_length=16, lr=1e-3, save_every=2, seed=0) | kw
    return run_simcse(folder, kw.pop("adapter", None), data, out, **kw)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_folder(root, name, kind, files, **meta):
    """A task folder (evaluate/tasks.py): task.json from `meta`, then each file, text or JSONL rows."""
    import json

    folder = root / name
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps(dict(name=name, type=kind, **meta)))
    for fname, content in files.items():
        (folder / fname).write_text(content if isinstance(content, str) else
                                    "".join(json.dumps(r) + "\n" for r in content))
    return folder


# The embedded default as `l2v fetch smollm2` writes it; tests that need it skip without it.
SMOLLM2_FOLDER = Path(__file__).resolve().parents[1] / "weights" / SMOLLM2_DIRNAME


# ---------------------------------------------------------------- a synthetic GGUF file (test_gguf, test_fetch)

# 2 layers, hidden 64 (Q8_0 quantizes blocks of 32 along the input dim), 4 heads / 2 kv heads.
D, F, L, H, KV, V = 64, 96, 2, 4, 2, 300


def byte_level_vocab():
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + alphabet + ["Ġt", "he", "Ġthe", "12"]
    tokens += [f"<extra_{i}>" for i in range(V - len(tokens))]
    merges = ["Ġ t", "h e", "Ġt he", "1 2"]
    types = [3, 3, 3] + [1] * (V - 3)
    return tokens, merges, types


def write_synthetic_gguf(path, tied: bool, arch: str = "llama"):
    """An HF-layout state dict, written the way llama.cpp's converter writes it: q/k rows permuted
    for llama only; Qwen2's q/k/v biases and Qwen3's q/k norms as extra tensors."""
    import gguf
    import numpy as np

    from l2v.formats.gguf import permute_for_llama_cpp, unpermute_from_llama_cpp

    Q8 = gguf.GGMLQuantizationType.Q8_0
    rng = np.random.default_rng(0)
    hf = {"model.embed_tokens.weight": rng.standard_normal((V, D), dtype=np.float32),
          "model.norm.weight": rng.uniform(0.5, 1.5, D).astype(np.float32)}
    if not tied:
        hf["lm_head.weight"] = rng.standard_normal((V, D), dtype=np.float32)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(L)
    w.add_context_length(128)
    w.add_embedding_length(D)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(100000.0)
    w.add_layer_norm_rms_eps(1e-5)
    tokens, merges, types = byte_level_vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if arch != "llama" else "smollm")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    if arch == "qwen3":
        w.add_key_length(16)
        w.add_value_length(16)

    def put(name, array, quantize):
        if quantize:  # store Q8_0; the expected value is what dequantization gives back
            q = gguf.quants.quantize(array, Q8)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=Q8)
            return gguf.quants.dequantize(q, Q8).reshape(array.shape)
        w.add_tensor(name, array)
        return array

    expected = {}
    expected["model.embed_tokens.weight"] = put("token_embd.weight", hf["model.embed_tokens.weight"], True)
    expected["model.norm.weight"] = put("output_norm.weight", hf["model.norm.weight"], False)
    if not tied:
        expected["lm_head.weight"] = put("output.weight", hf["lm_head.weight"], False)
    shapes = {"attn_q": (H * 16, D), "attn_k": (KV * 16, D), "attn_v": (KV * 16, D), "attn_output": (D, H * 16),
              "ffn_gate": (F, D), "ffn_up": (F, D), "ffn_down": (D, F)}
    hf_names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                "ffn_down": "mlp.down_proj"}
    for i in range(L):
        for norm, hf_norm in (("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm")):
            expected[f"model.layers.{i}.{hf_norm}.weight"] = put(
                f"blk.{i}.{norm}.weight", rng.uniform(0.5, 1.5, D).astype(np.float32), False)
        for j, (g, shape) in enumerate(shapes.items()):
            original = rng.standard_normal(shape, dtype=np.float32) / 8
            stored = original
            if g == "attn_q":  # what llama.cpp does to q and k rows
                stored = permute_for_llama_cpp(original, H)
            elif g == "attn_k":
                stored = permute_for_llama_cpp(original, KV)
            if arch != "llama":
                stored = original  # NeoX rotary: llama.cpp keeps HF's rows
            got = put(f"blk.{i}.{g}.weight", stored, quantize=(j % 2 == 0))
            if arch == "llama" and g == "attn_q":
                got = unpermute_from_llama_cpp(got, H)
            elif arch == "llama" and g == "attn_k":
                got = unpermute_from_llama_cpp(got, KV)
            expected[f"model.layers.{i}.{hf_names[g]}.weight"] = got
            if arch == "qwen2" and g in ("attn_q", "attn_k", "attn_v"):
                expected[f"model.layers.{i}.{hf_names[g]}.bias"] = put(
                    f"blk.{i}.{g}.bias", rng.standard_normal(shape[0], dtype=np.float32), False)
        if arch == "qwen3":
            for norm in ("q_norm", "k_norm"):
                expected[f"model.layers.{i}.self_attn.{norm}.weight"] = put(
                    f"blk.{i}.attn_{norm}.weight", rng.uniform(0.5, 1.5, 16).astype(np.float32), False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected
