"""`l2v export`: a trained embedder as one self-contained folder that other tools read too.

    OUT/
      config.json, model.safetensors       the model with its adapters merged (HF layout)
      tokenizer.json, tokenizer_config.json …
      l2v_encoder.json                     how its embeddings are made: attention, pooling, max length,
                                           the instruction rule — `Encoder.from_pretrained(OUT)` reads it
      modules.json,                        sentence-transformers: l2v's module, prompts, cosine
      config_sentence_transformers.json
      llm2vec_config.json                  the official llm2vec: pooling_mode, max_length
      README.md                            where it came from and how to use it

Merging happens in fp32 and the result is stored in `dtype` (default: the base model's own), so a
bf16 export rounds once, not once per adapter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..config import ModelConfig
from ..pooling import POOLINGS
from ..runtime.checks import L2VError, check_args
from ..runtime.files import atomic_folder, read_json
from ..runtime.precision import DTYPES
from ..tokenizer import DEFAULT_MAX_LENGTH
from .loading import load_model, save_model_folder

ENCODER_FILE = "l2v_encoder.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja")
# l2v's pooling names → the official llm2vec's pooling_mode.
LLM2VEC_POOLING = {"mean": "mean", "weighted_mean": "weighted_mean", "eos": "eos_token", "last": "last_token",
                   "bos": "bos_token"}
INSTRUCTION_RULE = ("an instruction is tokenised on its own and put before the text (after BOS): attended to, "
                    "not pooled; documents carry none")


def encoder_settings(folder) -> dict:
    """The folder's l2v_encoder.json as a dict ({} for a plain model folder)."""
    file = Path(folder) / ENCODER_FILE
    if not file.is_file():
        return {}
    settings = read_json(file)
    if not isinstance(settings, dict):
        raise L2VError(f"{file}: expected a JSON object")
    return settings


def resolve_encoder(folder, causal: bool | None = None, pooling: str | None = None,
                    max_length: int | None = None) -> tuple[bool, str, int]:
    """(causal, pooling, max_length): each as given, else the folder's own (an export), else
    LLM2Vec's (bidirectional, mean, 512). The one place these defaults live."""
    saved = encoder_settings(folder) if Path(folder).is_dir() else {}
    return (saved.get("causal", False) if causal is None else causal,
            saved.get("pooling", "mean") if pooling is None else pooling,
            saved.get("max_length", DEFAULT_MAX_LENGTH) if max_length is None else max_length)


def export_model(model_dir, out, *, adapters=(), causal: bool = False, pooling: str = "mean",
                 max_length: int = DEFAULT_MAX_LENGTH, dtype: str | None = None, prompts: dict | None = None,
                 overwrite: bool = False) -> Path:
    """Merge `adapters` (in order) into the model and write the folder described above → OUT."""
    model_dir, out = Path(model_dir), Path(out)
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    check_args(max_length=max_length)
    if out.resolve() == model_dir.resolve() or model_dir.resolve() in out.resolve().parents:
        raise L2VError(f"--out {out} is inside the model folder {model_dir}; give a folder of its own")
    if out.exists() and not overwrite:
        raise L2VError(f"{out} exists; give a new folder, or --overwrite to replace an earlier export")
    if out.exists() and not (out / ENCODER_FILE).is_file():
        raise L2VError(f"{out} exists and is not an l2v export (no {ENCODER_FILE}); l2v will not replace it")
    if not (model_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {model_dir}")

    model = load_model(model_dir, dtype=torch.float32, causal=causal)
    stored = _stored_dtype(model_dir)
    if adapters:
        from .peft import merge_adapters

        merge_adapters(model, adapters, base_model=model_dir)
    dtype = dtype or stored
    state = {k: v.to(DTYPES[dtype]) for k, v in model.state_dict().items()}
    config = ModelConfig.from_json(model_dir / "config.json")
    prompts = {"query": "", "document": "", **(prompts or {})}
    settings = dict(causal=causal, pooling=pooling, max_length=max_length, instructions=INSTRUCTION_RULE,
                    prompts=prompts, source=dict(model=str(model_dir), adapters=[str(a) for a in adapters]),
                    dtype=dtype, l2v_version=_version())
    with atomic_folder(out) as tmp:
        write_model_files(tmp, config, state, model_dir, settings)
        _write_json(tmp / "modules.json", [dict(idx=0, name="0", path="", type="l2v.formats.st_module.L2VModule")])
        _write_json(tmp / "config_sentence_transformers.json",
                    dict(model_type="SentenceTransformer", prompts=prompts, default_prompt_name=None,
                         similarity_fn_name="cosine", __version__=dict(l2v=_version())))
        (tmp / "README.md").write_text(_model_card(out.name, settings, config))
    return out


def write_model_files(folder, config: ModelConfig, state: dict, tokenizer_dir, settings: dict):
    """What l2v and llm2vec read: weights, config, tokenizer, l2v_encoder.json, llm2vec_config.json.
    (sentence-transformers' own files come from `export_model`, or from its `save`.)"""
    folder = Path(folder)
    save_model_folder(folder, config, state)
    _set_dtype(folder / "config.json", settings["dtype"])
    for name in TOKENIZER_FILES:
        if (Path(tokenizer_dir) / name).is_file():
            shutil.copyfile(Path(tokenizer_dir) / name, folder / name)
    _write_json(folder / ENCODER_FILE, settings)
    _write_json(folder / "llm2vec_config.json", dict(pooling_mode=LLM2VEC_POOLING[settings["pooling"]],
                                                     max_length=settings["max_length"], skip_instruction=True))


def _stored_dtype(model_dir: Path) -> str:
    """The dtype the base model's weights are stored in (what an export keeps by default)."""
    from safetensors import safe_open

    from .loading import _weight_files

    with safe_open(_weight_files(model_dir)[0], framework="pt") as f:
        name = next(iter(f.keys()))
        dtype = f.get_slice(name).get_dtype()
    return {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}.get(dtype, "float32")


def _set_dtype(config_file: Path, dtype: str):
    d = json.loads(config_file.read_text())
    d.pop("torch_dtype", None)
    d["dtype"] = dtype  # transformers 5 reads "dtype"; 4.x "torch_dtype"
    d["torch_dtype"] = dtype
    config_file.write_text(json.dumps(d, indent=2) + "\n")


def _write_json(path: Path, data):
    path.write_text(json.dumps(data, indent=2) + "\n")


def _version() -> str:
    from .. import __version__

    return __version__


def _model_card(name: str, s: dict, config: ModelConfig) -> str:
    mode = "causal" if s["causal"] else "bidirectional"
    adapters = ", ".join(s["source"]["adapters"]) or "none"
    return f"""# {name}

A text embedder made with l2v (LLM2Vec from scratch): {config.model_type},
{config.num_hidden_layers} layers, {config.hidden_size}-dimensional embeddings; {mode} attention,
{s["pooling"]} pooling, up to {s["max_length"]} tokens a text, weights in {s["dtype"]}.
Made from `{s["source"]["model"]}` with adapters merged in order: {adapters}.
Instructions: {s["instructions"]}.

```python
from l2v import Encoder                       # l2v
enc = Encoder.from_pretrained("{name}")
q = enc.encode_query(["how do plants make food?"], instruction="Given a question, retrieve passages that answer it:")

from sentence_transformers import SentenceTransformer   # sentence-transformers (>= 6 asks to trust l2v's module)
st = SentenceTransformer("{name}", trust_remote_code=True)
q = st.encode_query(["how do plants make food?"], prompt="Given a question, retrieve passages that answer it:")

from l2v.formats.mteb import L2VForMTEB            # mteb 2.x
model = L2VForMTEB.from_pretrained("{name}")

from llm2vec import LLM2Vec                        # the official llm2vec (reads llm2vec_config.json)
l2v_model = LLM2Vec.from_pretrained("{name}", enable_bidirectional={not s["causal"]})
```
"""
