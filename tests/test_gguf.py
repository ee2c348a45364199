"""Issue 3: the GGUF importer, on a synthetic GGUF file written with gguf.GGUFWriter (no network)."""

import json

import numpy as np
import pytest
import torch

import l2v
from l2v.gguf_import import convert_gguf, permute_for_llama_cpp, unpermute_from_llama_cpp

gguf = pytest.importorskip("gguf")
Q8 = gguf.GGMLQuantizationType.Q8_0

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


def test_permutation_round_trip():
    w = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    assert np.array_equal(unpermute_from_llama_cpp(permute_for_llama_cpp(w, 2), 2), w)
    # per head, llama.cpp interleaves the two rotate-half halves: rows (0, 2, 1, 3) of each head
    assert permute_for_llama_cpp(w, 2)[:4, 0].tolist() == [0.0, 6.0, 3.0, 9.0]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_synthetic_gguf_converts_back_to_the_original_tensors(tmp_path, tied, arch):
    expected = write_synthetic_gguf(tmp_path / "m.gguf", tied, arch)
    out = tmp_path / "hf"
    out.mkdir()
    convert_gguf(tmp_path / "m.gguf", out, show_progress=False)

    model = l2v.load_model(out)  # strict: every tensor the family needs, no other
    state = model.state_dict()
    assert model.config.model_type == arch and model.config.tie_word_embeddings is tied
    for name, value in expected.items():
        assert torch.equal(state[name], torch.from_numpy(value)), name
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (L, D, H, KV, 16)
    assert c.rope_theta == 100000.0 and c.vocab_size == V and c.eos_token_id == 2

    tk = l2v.Tokenizer(out)
    assert tk.encode(" the") == [tk.tk.token_to_id("Ġthe")]
    # smollm and qwen2 pre-tokenizers: digits are split one by one *before* BPE, so "1 2" never merges
    assert tk.encode("12") == [tk.tk.token_to_id("1"), tk.tk.token_to_id("2")]
    assert tk.encode("<|im_start|>") == [1]  # control tokens are special, never split
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert cfg["add_bos_token"] is False and cfg["eos_token"] == "<|im_end|>"


def test_unknown_architecture_is_a_clear_error(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "x.gguf"), "falcon")
    w.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="unknown GGUF architecture 'falcon'"):
        convert_gguf(tmp_path / "x.gguf", tmp_path, show_progress=False)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_conversion_equals_transformers_gguf_loader(tmp_path, arch):
    """An independent reader of the same file: transformers' own GGUF loader. (Its Qwen3 reader
    ignores key_length and so cannot read a head_dim; Qwen3 is checked against the original above.)"""
    transformers = pytest.importorskip("transformers")
    write_synthetic_gguf(tmp_path / "m.gguf", tied=False, arch=arch)
    (tmp_path / "hf").mkdir()
    convert_gguf(tmp_path / "m.gguf", tmp_path / "hf", show_progress=False)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf").state_dict()
    ours = l2v.load_model(tmp_path / "hf").state_dict()
    assert set(ours) == set(theirs)
    for name in ours:
        assert torch.equal(ours[name], theirs[name].float()), name
