"""Issue 2: every loading and config error names its problem."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import l2v
from l2v.config import ModelConfig


def copy_of(tiny_folder, tmp_path, name="llama-gqa"):
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder(name)[0], folder)
    return folder


def rewrite_weights(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        l2v.load_model(tmp_path / "nope")


def test_missing_config(tiny_folder, tmp_path):
    folder = copy_of(tiny_folder, tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        l2v.load_model(folder)


def test_missing_weights_and_pickle_refused(tiny_folder, tmp_path):
    folder = copy_of(tiny_folder, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        l2v.load_model(folder)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="never pickle"):
        l2v.load_model(folder)


def test_missing_shard(tiny_folder, tmp_path):
    folder = copy_of(tiny_folder, tmp_path, "llama-sharded")
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=f"shard {shard.name} .* is missing"):
        l2v.load_model(folder)


def test_missing_and_unexpected_tensors_are_listed(tiny_folder, tmp_path):
    folder = copy_of(tiny_folder, tmp_path)

    def edit(t):
        t["model.layers.1.extra.weight"] = t.pop("model.layers.1.mlp.up_proj.weight")

    rewrite_weights(folder, edit)
    with pytest.raises(l2v.CheckpointError) as e:
        l2v.load_model(folder)
    assert "missing tensors (1): model.layers.1.mlp.up_proj.weight" in str(e.value)
    assert "unexpected tensors (1): model.layers.1.extra.weight" in str(e.value)


def test_shape_mismatch_names_tensor_and_shapes(tiny_folder, tmp_path):
    folder = copy_of(tiny_folder, tmp_path)
    rewrite_weights(folder, lambda t: t.update({"model.norm.weight": torch.ones(47)}))
    with pytest.raises(l2v.CheckpointError, match=r"model.norm.weight: expected \(48,\), got \(47,\)"):
        l2v.load_model(folder)


SHAPE = dict(vocab_size=11, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)


def test_unknown_model_type_and_rope_type():
    with pytest.raises(ValueError, match="unknown model_type 'gpt2'"):
        ModelConfig.from_dict({"model_type": "gpt2"})
    with pytest.raises(ValueError, match="unknown rope type 'yarn'"):
        ModelConfig.from_dict({"model_type": "llama", "rope_scaling": {"rope_type": "yarn", "factor": 2}, **SHAPE})
    with pytest.raises(ValueError, match="no 'model_type'"):
        ModelConfig.from_dict({})


def test_config_reads_transformers_4_layout_too():
    old = ModelConfig.from_dict({"model_type": "llama", "rope_theta": 5e5,
                                 "rope_scaling": {"type": "linear", "factor": 2.0}, **SHAPE})
    new = ModelConfig.from_dict({"model_type": "llama", "rope_parameters":
                                 {"rope_theta": 5e5, "rope_type": "linear", "factor": 2.0}, **SHAPE})
    assert old.rope_theta == new.rope_theta == 5e5
    assert old.rope_type == new.rope_type == "linear"
    assert old.rope_scaling["factor"] == new.rope_scaling["factor"] == 2.0


def test_config_round_trips_through_transformers(tiny_folder, tmp_path):
    transformers = pytest.importorskip("transformers")
    folder, _ = tiny_folder("llama3-rope")
    config = ModelConfig.from_json(folder / "config.json")
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    again = transformers.AutoConfig.from_pretrained(tmp_path)
    assert again.rope_parameters["rope_type"] == "llama3"
    assert ModelConfig.from_dict(again.to_dict()) == config
