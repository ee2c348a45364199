"""Issue 19: what is particular to each decoder family — config reading, tokenizer BOS/EOS/mask
token, and the whole command line (encode, mntp, simcse) on a tiny folder of each family. The
reference checks proper (states, logits, LoRA, MNTP loss against transformers and peft) are the
FAMILIES-parametrized tests in test_model.py, test_lora.py and test_mntp.py."""

import json

import numpy as np
import pytest
from conftest import FAMILIES, FAMILY_TOKENIZER, TINY_CORPUS

import l2v
from l2v.config import ModelConfig
from l2v.tools.cli import main as cli

transformers = pytest.importorskip("transformers")
TEXT = "The cat sat on the mat."


@pytest.mark.parametrize("name", FAMILIES)
def test_tokenizer_adds_what_transformers_adds(family_folder, name):
    """BOS from the tokenizer files as `tokenizers` / transformers read them (a Llama-3-style
    template with no add_bos_token key included); Qwen adds nothing."""
    folder = family_folder(name)
    ours = l2v.Tokenizer(folder)
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    ids = ours([TEXT]).input_ids[0].tolist()
    style = FAMILY_TOKENIZER[name]
    bos = ours.tk.token_to_id("<s>")
    if style == "llama2":  # the key alone: transformers' LlamaTokenizer honours it, its generic backend does not
        assert ids == [bos] + theirs(TEXT, add_special_tokens=False).input_ids
    else:
        assert ids == theirs(TEXT).input_ids
    assert ours.add_bos == (style != "qwen") and (ids[0] == bos) == (style != "qwen")
    assert ours.bos_id == (None if style == "qwen" else bos)
    assert ours.eos_id == ours.tk.token_to_id("</s>") and not ours.add_eos
    assert ours.mask_token == ("<mask>" if style == "gemma" else "_")
    assert ours.mask_token_id == ours.tk.token_to_id(ours.mask_token) is not None


@pytest.mark.parametrize("name", ["llama-gqa", "qwen2"])
def test_instruction_split_follows_the_joint_rule(family_folder, name):
    """With or without a BOS: "instruction:" + text tokenised as one string; the instruction's share (as many
    tokens as it has alone) attended to, the rest pooled."""
    tk = l2v.Tokenizer(family_folder(name))
    batch = tk([TEXT], instructions=["Retrieve a passage"], max_length=64)
    joint, instruction = tk.encode("Retrieve a passage:" + TEXT), tk.encode("Retrieve a passage:")
    prefix = [tk.bos_id] if tk.add_bos else []
    assert batch.input_ids[0].tolist() == prefix + joint
    assert batch.pool_mask[0].tolist() == [0] * (len(prefix) + len(instruction)) + [1] * (len(joint) - len(instruction))


def test_llama3_template_without_tokenizer_config(family_folder, tmp_path):
    """Only tokenizer.json (+ config.json): BOS comes from the template, EOS from config.json."""
    src = family_folder("llama-gqa")
    for f in ("tokenizer.json", "config.json"):
        (tmp_path / f).write_bytes((src / f).read_bytes())
    tk = l2v.Tokenizer(tmp_path)
    assert tk.add_bos and tk.bos_id == tk.tk.token_to_id("<s>") and tk.eos_id == 2


@pytest.mark.parametrize("bad, message", [
    ({"hidden_act": "relu"}, "unsupported hidden_act 'relu'"),
    ({"mlp_bias": True}, "unsupported mlp_bias"),
    ({"layer_types": ["full_attention", "chunked_attention"]}, "layer_types must list 2 of"),
    ({"layer_types": ["sliding_attention", "full_attention"]}, "sliding_window is not set"),
])
def test_unsupported_config_values_are_named_errors(bad, message):
    base = dict(model_type="llama", vocab_size=101, intermediate_size=64, num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=4)
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict({**base, **bad})


def test_family_defaults_when_config_json_is_terse():
    """Older hub configs leave out keys whose transformers default differs from LLaMA's."""
    shape = dict(vocab_size=101, intermediate_size=64)  # required: never a default
    g = ModelConfig.from_dict(dict(shape, model_type="gemma2", num_hidden_layers=4, hidden_size=64, num_attention_heads=2,
                                   num_key_value_heads=1))
    assert (g.head_dim, g.hidden_act, g.tie_word_embeddings, g.sliding_window) == (256, "gelu_pytorch_tanh", True, 4096)
    assert g.layer_types == ["sliding_attention", "full_attention"] * 2
    assert (g.attn_logit_softcapping, g.final_logit_softcapping, g.query_pre_attn_scalar) == (50.0, 30.0, 256)
    q = ModelConfig.from_dict(dict(shape, model_type="qwen2", num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                   sliding_window=32768, num_key_value_heads=4,
                                   use_sliding_window=False, max_window_layers=1))
    assert q.sliding_window is None and q.layer_types == ["full_attention"] * 2 and q.qkv_bias
    assert ModelConfig.from_dict(dict(shape, model_type="gemma", hidden_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, hidden_act="gelu")).hidden_act == "gelu_pytorch_tanh"


@pytest.mark.parametrize("name", FAMILIES)
def test_saved_config_round_trips_through_transformers(family_folder, name, tmp_path):
    config = ModelConfig.from_json(family_folder(name) / "config.json")
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    again = transformers.AutoConfig.from_pretrained(tmp_path)
    assert type(again).__name__.lower().startswith(config.model_type.replace("-", ""))
    assert ModelConfig.from_json(tmp_path / "config.json") == config


@pytest.mark.parametrize("name", FAMILIES)
def test_cli_encode_mntp_simcse(family_folder, name, tmp_path):
    folder = family_folder(name)
    (tmp_path / "texts.txt").write_text("\n".join(TINY_CORPUS))
    args = ["--model", str(folder), "--data", str(tmp_path / "texts.txt"), "--steps", "2", "--batch-size", "4",
            "--max-length", "16"]
    assert not cli(["mntp", *args, "--out", str(tmp_path / "mntp")])
    assert not cli(["simcse", *args, "--out", str(tmp_path / "simcse")])
    for stage in ("mntp", "simcse"):
        log = [json.loads(line) for line in (tmp_path / stage / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log if "loss" in r] == [1, 2] and all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    (tmp_path / "in.txt").write_text("a cat\nthe park\n")
    assert not cli(["encode", "--model", str(folder), "--adapter", str(tmp_path / "mntp"), "--adapter",
                    str(tmp_path / "simcse"), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "e.npy")])
    emb = np.load(tmp_path / "e.npy")
    assert emb.shape == (2, 48) and np.isfinite(emb).all()
    plain = l2v.Encoder.from_pretrained(folder).encode(["a cat", "the park"])
    assert not np.allclose(emb, plain, atol=1e-6)  # the adapters were applied
