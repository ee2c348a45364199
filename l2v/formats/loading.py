"""Reading and writing Hugging Face model folders — safetensors only, never pickle.

A folder holds `config.json` and either `model.safetensors` or shards listed in
`model.safetensors.index.json`. The model is built on the meta device (no memory, no random
init) and the tensors are then *assigned* into it, so loading a 7B model costs about one copy of
its weights rather than two.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import ModelConfig
from ..model import Transformer
from ..runtime.checks import L2VError, first_non_finite
from ..runtime.files import read_json
from ..runtime.precision import NATIVE_BF16_ENV, native_bf16, upcast_compute

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class CheckpointError(L2VError):
    """A checkpoint does not fit the model its config describes."""


def load_model(path, dtype=None, device=None, causal: bool = True) -> Transformer:
    """Load an HF-layout LLaMA/Mistral folder into l2v's `Transformer`.

    dtype: None keeps the dtype the weights are stored in. causal: the default attention mode
    (LLM2Vec embedders use False); each call can still override it. device: "cuda" means this
    process's GPU (`resolve_device`). bf16 weights on a CPU without native bf16 are computed in
    fp32, each weight upcast as it is used (precision.py); the choice is printed.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in model folder {folder}")
    config = ModelConfig.from_json(config_file)
    shards = _weight_files(folder)

    with torch.device("meta"):
        model = Transformer(config, causal=causal)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight")  # the same tensor as model.embed_tokens.weight
    _check_names_and_shapes(expected, shards)

    device = resolve_device(device)
    state = {}
    for file in shards:
        # On CPU the tensors stay views of the memory-mapped file (copy-on-write): no second copy.
        with safe_open(file, framework="pt", device=str(device)) as f:
            for name in f.keys():
                if name in expected:
                    t = f.get_tensor(name)
                    if first_non_finite([(name, t)]):  # a NaN weight would make every embedding NaN, silently
                        raise CheckpointError(f"{file}: tensor {name} holds NaN or inf values")
                    state[name] = t if dtype is None else t.to(dtype)
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()  # assign=True put two Parameter objects in place: make them one again
    if device.type == "cpu" and model.lm_head.weight.dtype == torch.bfloat16 and not native_bf16("cpu"):
        upcast_compute(model)
        print(f"{folder.name}: this CPU has no native bf16 (it emulates bf16 matmuls, far slower); bf16 weights are kept "
              f"and computed in fp32, each upcast as it is used ({NATIVE_BF16_ENV}=1 forces bf16)")
    return model.eval()


def resolve_device(device=None) -> torch.device:
    """The device to use: None → CUDA when this torch sees a GPU, else the CPU (as transformers and
    sentence-transformers choose); "cpu" forces the CPU. "cuda" → this process's GPU: cuda:LOCAL_RANK
    under torchrun, else the current CUDA device. (A bare "cuda" means GPU 0 to safe_open and to .to()
    whatever torch.cuda.set_device said, which would put every torchrun process on GPU 0.)"""
    if isinstance(device, str) and not device.strip():
        device = None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise L2VError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):  # mps, xpu, ...: never tested with l2v's kernels and dtypes
        raise L2VError(f"device {str(device)!r}: l2v runs on cpu or cuda only; leave --device out or use --device cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise L2VError(f"device {str(device)!r}: no CUDA GPU is usable here (torch {torch.__version__}, {build}); "
                           f"leave --device out or use --device cpu")
        if device.index is None:
            local_rank = os.environ.get("LOCAL_RANK")
            device = torch.device("cuda", int(local_rank) if local_rank is not None else torch.cuda.current_device())
        elif device.index >= torch.cuda.device_count():
            raise L2VError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type not in ("cpu", "mps", "xpu"):
        raise L2VError(f"unknown device {str(device)!r}: use cpu, cuda or cuda:N")
    return device


def _weight_files(folder: Path) -> list[Path]:
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    index = folder / INDEX_FILE
    if index.is_file():
        spec = read_json(index)
        weight_map = spec.get("weight_map") if isinstance(spec, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index} has no 'weight_map'")
        for name in set(weight_map.values()):  # a shard is a file of this folder, never ../elsewhere
            if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
                raise CheckpointError(f"{index} names shard {name!r} outside the model folder")
        files = [folder / name for name in sorted(set(weight_map.values()))]
        for file in files:
            if not file.is_file():
                raise FileNotFoundError(f"shard {file.name} listed in {index} is missing")
        return files
    hint = ""
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        hint = " (found pickle files: l2v reads safetensors only, never pickle)"
    raise FileNotFoundError(f"no {SINGLE_FILE} or {INDEX_FILE} in {folder}{hint}")


def _check_names_and_shapes(expected: dict[str, tuple], files: list[Path]):
    """Compare the checkpoint's tensor names and shapes with the model's, reading headers only."""
    found = {}
    for file in files:
        try:
            with safe_open(file, framework="pt") as f:
                for name in f.keys():
                    found[name] = tuple(f.get_slice(name).get_shape())
        except Exception as e:  # safetensors' own error type; a truncated or foreign file
            raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from None
    if "lm_head.weight" not in expected:  # tied head: a stored copy is accepted and ignored
        found.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        lines = []
        if missing:
            lines.append(f"missing tensors ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"unexpected tensors ({len(unexpected)}): {', '.join(unexpected)}")
        raise CheckpointError("checkpoint does not match config.json:\n  " + "\n  ".join(lines))
    for name, shape in expected.items():
        if found[name] != shape:
            raise CheckpointError(f"shape mismatch for {name}: expected {shape}, got {found[name]}")


def save_model_folder(folder, config: ModelConfig, state_dict: dict[str, torch.Tensor]):
    """Write config.json + model.safetensors into an existing folder (HF layout, tied head omitted)."""
    folder = Path(folder)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    tensors = {k: v.contiguous() for k, v in state_dict.items()}
    if config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    save_file(tensors, str(folder / SINGLE_FILE), metadata={"format": "pt"})
