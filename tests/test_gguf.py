"""Issue 3: the GGUF importer, on a synthetic GGUF file written with gguf.GGUFWriter (no network)."""

import json

import numpy as np
import pytest
import torch
from conftest import KV, D, H, L, V, write_synthetic_gguf

import l2v
from l2v.formats.gguf import convert_gguf, permute_for_llama_cpp, unpermute_from_llama_cpp

gguf = pytest.importorskip("gguf")


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
