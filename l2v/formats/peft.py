"""LoRA adapters as files, in PEFT's format: `adapter_config.json` + `adapter_model.safetensors`,
with keys `base_model.model.<module path>.lora_A.weight` — so l2v and peft read each other's
adapters, and the official llm2vec's adapters load as they are.

    save_adapter(model, folder)              the model's LoRA (lora.py) → a folder
    merge_adapters(model, folders)           adapters folded into the weights, one after another
    read_adapter / load_adapter              the tensors, checked; a model wrapped and loaded
    convert_adapter(src, dst, layout)        rewrite the keys for the other layout (llm2vec's)
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..lora import apply_lora, lora_modules, merge_lora
from ..runtime.checks import first_non_finite
from ..runtime.files import atomic_folder, read_json
from .loading import CheckpointError

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


# Where PEFT was applied decides the keys: over a *CausalLM* (l2v's default, and peft on
# LlamaForCausalLM) paths start at `model.layers…`; over the *inner* model (the official llm2vec, which
# wraps LlamaBiModel) they start at `layers…`. peft skips keys that do not fit, with a warning only.
LAYOUTS = ("causal_lm", "model")


def adapter_state(model: nn.Module, layout: str = "causal_lm") -> dict[str, torch.Tensor]:
    """LoRA tensors under PEFT's names: base_model.model.<module path>.lora_A.weight."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown adapter layout {layout!r}: choose {' or '.join(LAYOUTS)}")
    state = {}
    for path, m in lora_modules(model).items():
        if layout == "model":
            path = path.removeprefix("model.")
        state[f"{PEFT_PREFIX}{path}.lora_A.weight"] = m.lora_A.weight.detach().float().cpu().contiguous()
        state[f"{PEFT_PREFIX}{path}.lora_B.weight"] = m.lora_B.weight.detach().float().cpu().contiguous()
    return state


def write_adapter(folder, model: nn.Module, base_model: str | None = None, layout: str = "causal_lm"):
    """Write adapter_config.json + adapter_model.safetensors into an existing folder."""
    folder = Path(folder)
    task_type = "CAUSAL_LM" if layout == "causal_lm" else None  # llm2vec's adapters name no task
    cfg = dict(peft_type="LORA", task_type=task_type, base_model_name_or_path=base_model, bias="none",
               fan_in_fan_out=False, inference_mode=True, init_lora_weights=True, **model.lora_config)
    state = adapter_state(model, layout)
    (folder / ADAPTER_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
    save_file(state, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})


def save_adapter(model: nn.Module, folder, base_model: str | None = None, layout: str = "causal_lm"):
    """Save the model's LoRA adapter in PEFT's format, atomically. layout="model" writes the keys the
    official llm2vec (PEFT over its bidirectional LlamaBiModel) reads."""
    with atomic_folder(folder) as tmp:
        write_adapter(tmp, model, base_model, layout)


def convert_adapter(src, dst, layout: str = "model"):
    """Rewrite an adapter folder (either layout) with the keys of `layout` into the new folder `dst`:
    l2v's adapters for the official llm2vec, or llm2vec's for peft over a CausalLM."""
    cfg, tensors = read_adapter(src)
    if Path(dst).exists():
        raise FileExistsError(f"{dst} exists; give a new folder")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown adapter layout {layout!r}: choose {' or '.join(LAYOUTS)}")
    state = {}
    for path, pair in tensors.items():
        key_path = path.removeprefix("model.") if layout == "model" else path
        for which, value in pair.items():
            state[f"{PEFT_PREFIX}{key_path}.{which}.weight"] = value.contiguous()
    cfg = {**cfg, "task_type": "CAUSAL_LM" if layout == "causal_lm" else None}
    with atomic_folder(dst) as tmp:
        (Path(tmp) / ADAPTER_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
        save_file(state, str(Path(tmp) / ADAPTER_WEIGHTS), metadata={"format": "pt"})


def read_adapter(folder) -> tuple[dict, dict[str, torch.Tensor]]:
    """→ (adapter config, {module path: {"lora_A": A, "lora_B": B}}) in l2v's module paths.

    Two key layouts are accepted: PEFT over a *CausalLM* (`base_model.model.model.layers.0…`, what
    l2v and peft on LlamaForCausalLM write) and PEFT over the *inner* model
    (`base_model.model.layers.0…`, the official LLM2Vec adapters on the hub); the latter gets the
    `model.` prefix our module paths have.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"adapter folder not found: {folder}")
    for f in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (folder / f).is_file():
            raise FileNotFoundError(f"no {f} in adapter folder {folder}")
    cfg = read_json(folder / ADAPTER_CONFIG)
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{folder / ADAPTER_CONFIG}: expected a JSON object")
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{folder} holds a {cfg['peft_type']} adapter; l2v reads LoRA only")
    unsupported = [k for k in ("use_dora", "use_rslora", "rank_pattern", "alpha_pattern") if cfg.get(k)]
    if unsupported:
        raise ValueError(f"adapter {folder} uses {', '.join(unsupported)}, which l2v's LoRA does not implement")
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    try:
        f = safe_open(folder / ADAPTER_WEIGHTS, framework="pt")
    except Exception as e:  # safetensors' own error type: a truncated or foreign file
        raise CheckpointError(f"{folder / ADAPTER_WEIGHTS}: not a readable safetensors file ({e})") from None
    with f:
        for key in f.keys():
            if not key.startswith(PEFT_PREFIX) or not (key.endswith(".lora_A.weight") or key.endswith(".lora_B.weight")):
                raise CheckpointError(f"unexpected tensor {key} in {folder / ADAPTER_WEIGHTS}")
            path, which, _ = key[len(PEFT_PREFIX):].rsplit(".", 2)
            path = path.replace(".default", "")  # older peft versions kept the adapter name in keys
            if path.startswith("layers."):
                path = "model." + path  # adapter made on the inner model (LLM2Vec's hub adapters)
            value = f.get_tensor(key)
            if first_non_finite([(key, value)]):  # merged, a NaN would make every embedding NaN
                raise CheckpointError(f"{folder / ADAPTER_WEIGHTS}: tensor {key} holds NaN or inf values")
            tensors.setdefault(path, {})[which] = value
    return cfg, tensors


# peft's LoraConfig defaults, for fields an adapter_config.json leaves out.
PEFT_DEFAULTS = dict(r=8, lora_alpha=8, lora_dropout=0.0)


def load_adapter(model: nn.Module, folder, base_model=None) -> nn.Module:
    """Wrap the model with LoRA as the adapter's config says and load its A and B.
    base_model: the model folder, to warn when the adapter says it was made for another one."""
    cfg, tensors = read_adapter(folder)
    _check_adapter_config(cfg, folder, base_model)
    modules = dict(model.named_modules())
    unknown = sorted(p for p in tensors if p not in modules)
    if unknown:
        raise CheckpointError(f"adapter {folder} names modules this model lacks: {', '.join(unknown[:5])}")
    targets = sorted({p.rsplit(".", 1)[-1] for p in tensors})
    r = int(cfg.get("r", PEFT_DEFAULTS["r"]))
    apply_lora(model, r=r, alpha=cfg.get("lora_alpha", PEFT_DEFAULTS["lora_alpha"]),
               dropout=cfg.get("lora_dropout", PEFT_DEFAULTS["lora_dropout"]), targets=targets)
    copy_lora_tensors(model, tensors, folder)
    return model


def copy_lora_tensors(model: nn.Module, tensors: dict, folder, what: str = "adapter"):
    """Put an adapter's A and B ({module path: {"lora_A": A, "lora_B": B}}, as read_adapter gives
    them) into the model's LoRA layers, every one present and of the layer's shape. Loading an
    adapter and resuming a training checkpoint (what="checkpoint") both come here."""
    hint = " (an adapter made for another model?)" if what == "adapter" else ""
    for path, m in lora_modules(model).items():
        if path not in tensors:
            raise CheckpointError(f"{what} {folder} has no tensors for {path}{hint}")
        for which in ("lora_A", "lora_B"):
            param, value = getattr(m, which).weight, tensors[path].get(which)
            name = f"{PEFT_PREFIX}{path}.{which}.weight"
            if value is None:
                raise CheckpointError(f"{what} {folder} lacks {name}")
            if tuple(value.shape) != tuple(param.shape):
                raise CheckpointError(f"shape mismatch for {name}: model expects {tuple(param.shape)}, "
                                      f"{what} has {tuple(value.shape)}{hint}")
            with torch.no_grad():
                param.copy_(value)


def _check_adapter_config(cfg: dict, folder, base_model):
    for key in ("r", "lora_alpha"):
        value = cfg.get(key, PEFT_DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise CheckpointError(f"{Path(folder) / ADAPTER_CONFIG}: {key} must be a positive number, got {value!r}")
    if cfg.get("fan_in_fan_out"):  # a GPT-2 Conv1D setting; peft too ignores it on nn.Linear, with a warning
        warnings.warn(f"{Path(folder) / ADAPTER_CONFIG} sets fan_in_fan_out: true, which does not apply to "
                      f"LLaMA/Mistral's nn.Linear layers; read as false (as peft does)", stacklevel=3)
    named = cfg.get("base_model_name_or_path")
    if base_model is not None and isinstance(named, str) and named:
        if Path(named.rstrip("/")).name != Path(str(base_model).rstrip("/")).name:
            warnings.warn(f"adapter {folder} was made for {named!r}, not {str(base_model)!r}; merging it anyway "
                          f"(its shapes fit this model)", stacklevel=3)


def average_adapters(folders: Sequence, dst) -> Path:
    """The mean of several adapters' updates, exactly, as one adapter → dst (e.g. two seeds' SimCSE runs).

    Each update is scale·B·A (scale = alpha / r). Their mean is (1/n)·Σ sᵢ·Bᵢ·Aᵢ = [s₁B₁/n | … | sₙBₙ/n] ·
    [A₁; …; Aₙ]: a LoRA of rank Σ rᵢ with scale 1. Averaging A and B separately would not be the mean
    update (their product mixes runs), so the update is what gets averaged."""
    read = [read_adapter(f) for f in folders]
    if len(read) < 2:
        raise ValueError("average_adapters needs two or more adapters")
    paths = set(read[0][1])
    for folder, (_, tensors) in zip(folders, read):
        if set(tensors) != paths:
            raise ValueError(f"{folder} adapts other modules than {folders[0]}; only like adapters average")
    scales = [c.get("lora_alpha", PEFT_DEFAULTS["lora_alpha"]) / c.get("r", PEFT_DEFAULTS["r"]) for c, _ in read]
    state = {}
    for path in sorted(paths):
        state[f"{PEFT_PREFIX}{path}.lora_A.weight"] = torch.cat([t[path]["lora_A"].float() for _, t in read]).contiguous()
        state[f"{PEFT_PREFIX}{path}.lora_B.weight"] = torch.cat(
            [t[path]["lora_B"].float() * s / len(read) for (_, t), s in zip(read, scales)], dim=1).contiguous()
    rank = sum(c.get("r", PEFT_DEFAULTS["r"]) for c, _ in read)
    cfg = {**read[0][0], "r": rank, "lora_alpha": rank, "lora_dropout": 0.0, "task_type": "CAUSAL_LM",
           "l2v_average_of": [str(f) for f in folders]}
    with atomic_folder(dst) as tmp:
        (Path(tmp) / ADAPTER_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
        save_file(state, str(Path(tmp) / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return Path(dst)


def merge_adapters(model: nn.Module, folders: Sequence, base_model=None) -> nn.Module:
    """Merge adapters into the base one after another (LLM2Vec: MNTP, then SimCSE on top)."""
    for folder in folders:
        merge_lora(load_adapter(model, folder, base_model))
    return model
