"""`l2v export`: a trained embedder as a plain Hugging Face folder that loads without l2v.

    OUT/
      config.json, model.safetensors       the model with its adapters merged (HF layout); config.json
                                           says "is_causal": false when the export is bidirectional,
                                           which transformers >= 5.2 obeys (5.1 silently runs causal)
      tokenizer.json, tokenizer_config.json …
      modules.json, sentence_bert_config.json, 1_Pooling/, [2_Normalize/],
      config_sentence_transformers.json    sentence-transformers' own modules: Transformer, Pooling
                                           (l2v's pooling, instructions left out of it), Normalize;
                                           prompts, max_seq_length — no l2v, no trust_remote_code
      l2v_encoder.json                     l2v's settings: `Encoder.from_pretrained(OUT)` reads them
      llm2vec_config.json                  the official llm2vec: pooling_mode, max_length, doc_max_length
      README.md                            a model card with Hub metadata

What the standard modules cannot say keeps l2v's own module (st_module.py, which sentence-transformers
loads only with trust_remote_code=True) and the export says why in one line: pooling eos (an appended
EOS), bos and weighted_mean (its position weights restart after the instruction), and tokenizers that
add a BOS (sentence-transformers' Pooling would pool it; l2v and llm2vec leave it out).

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
from ..tokenizer import DEFAULT_MAX_LENGTH, instruction_prefix
from .loading import load_model, save_model_folder

ENCODER_FILE = "l2v_encoder.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja")
# l2v's pooling names → the official llm2vec's pooling_mode.
LLM2VEC_POOLING = {"mean": "mean", "weighted_mean": "weighted_mean", "eos": "eos_token", "last": "last_token",
                   "bos": "bos_token"}
INSTRUCTION_NOTE = ("an instruction (with a ':' added after a final letter or digit) is put before the text and "
                    "the two are tokenised as one string; the instruction's tokens (as many as it has alone) are "
                    "attended to, not pooled; documents carry none")
ST_POOLING = {"mean": "mean", "last": "lasttoken"}  # l2v's poolings that sentence-transformers' Pooling computes alike
MIN_TRANSFORMERS = "5.2"  # the first transformers that reads "is_causal": false (measured: 5.1.0 runs causal)


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
                 normalize: bool = False, truncate_dim: int | None = None, base_model: str | None = None,
                 license: str | None = None, datasets=None, scores=None, overwrite: bool = False,
                 device=None) -> Path:
    """Merge `adapters` (in order) into the model and write the folder described above → OUT.
    scores: an `l2v eval` record (dict or JSON file) of this export, put in the card's metadata.
    truncate_dim: the leading dimensions users keep (a Matryoshka-trained model's smaller size):
    l2v and sentence-transformers both apply it (config_sentence_transformers.json's truncate_dim).
    datasets: the card's training data (default, when adapters are merged: l2v's own text, wikipedia)."""
    from ..tokenizer import Tokenizer

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
    record = _read_scores(scores)
    config = ModelConfig.from_json(model_dir / "config.json")
    if truncate_dim is not None and (isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int)
                                     or not 0 < truncate_dim <= config.hidden_size):
        raise L2VError(f"truncate_dim must be an integer from 1 to {config.hidden_size}, got {truncate_dim!r}")
    if truncate_dim is not None and normalize:  # sentence-transformers would normalise first, then cut
        raise L2VError("--normalize with --truncate-dim: sentence-transformers normalises before it truncates, so "
                       "the vectors would not be unit length; normalise after encoding instead")

    # Merged in fp32 on the CPU unless a `device` is given (a 7B model's fp32 weights take 28 GiB).
    model = load_model(model_dir, dtype=torch.float32, causal=causal, device=device or "cpu")
    stored = _stored_dtype(model_dir)
    if adapters:
        from .peft import merge_adapters

        merge_adapters(model, adapters, base_model=model_dir)
    dtype = dtype or stored
    state = {k: v.to(DTYPES[dtype]).cpu() for k, v in model.state_dict().items()}
    del model
    # as l2v puts them before a text (":" after a final letter or digit), so sentence-transformers reads the same
    prompts = {k: instruction_prefix(v) for k, v in {"query": "", "document": "", **(prompts or {})}.items()}
    why_not = standard_modules_refusal(Tokenizer(model_dir), pooling)
    settings = dict(causal=causal, pooling=pooling, max_length=max_length, normalize=normalize, truncate_dim=truncate_dim,
                    instructions=INSTRUCTION_NOTE, prompts=prompts,
                    source=dict(model=str(model_dir), adapters=[str(a) for a in adapters]), dtype=dtype,
                    sentence_transformers="standard modules" if why_not is None else f"l2v's module: {why_not}",
                    l2v_version=_version())
    with atomic_folder(out) as tmp:
        write_model_files(tmp, config, state, model_dir, settings)
        if why_not is None:
            write_st_modules(tmp, config.hidden_size, pooling, max_length, normalize)
        else:
            print(f"sentence-transformers will need trust_remote_code=True and l2v installed: {why_not}")
            modules = [dict(idx=0, name="0", path="", type="l2v.formats.st_module.L2VModule")]
            if normalize:
                modules.append(_normalize_module(tmp, idx=1))
            _write_json(tmp / "modules.json", modules)
        # sentence-transformers >= 6 refuses to load the folder under a transformers that would run it causally
        requirements = {} if causal else {"transformers": dict(
            specifier=f">={MIN_TRANSFORMERS}", reason="older versions ignore is_causal and run the model causally")}
        _write_json(tmp / "config_sentence_transformers.json",
                    dict(model_type="SentenceTransformer", prompts=prompts, default_prompt_name=None,
                         similarity_fn_name="cosine", truncate_dim=truncate_dim, requirements=requirements,
                         __version__=dict(l2v=_version())))
        if datasets is None:
            datasets = ["wikipedia"] if adapters else []
        (tmp / "README.md").write_text(model_card(out.name, settings, config, adapters, base_model or
                                                  _known_base(model_dir), license, record, datasets))
    return out


def standard_modules_refusal(tokenizer, pooling: str) -> str | None:
    """None when sentence-transformers' standard modules embed exactly as l2v does; else why not, in one line."""
    if pooling not in ST_POOLING:
        return {"eos": "pooling eos appends an EOS token, which no standard module does",
                "bos": "pooling bos pools the BOS token, which sentence-transformers counts as part of a prompt and "
                       "leaves out of a query's pooling",
                "weighted_mean": "weighted_mean's weights restart at 1 after an instruction; sentence-transformers' "
                                 "keep counting from the first token"}[pooling]
    if tokenizer.add_bos:
        return ("this tokenizer adds a BOS token, which sentence-transformers' Pooling would pool with a "
                "document's text (l2v and llm2vec leave it out)")
    return None


def write_st_modules(folder, dim: int, pooling: str, max_length: int, normalize: bool):
    """sentence-transformers' Transformer → Pooling (→ Normalize), in the layout every version since 3 reads."""
    folder = Path(folder)
    modules = [dict(idx=0, name="0", path="", type="sentence_transformers.models.Transformer"),
               dict(idx=1, name="1", path="1_Pooling", type="sentence_transformers.models.Pooling")]
    if normalize:
        modules.append(_normalize_module(folder, idx=2))
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "sentence_bert_config.json", dict(max_seq_length=max_length, do_lower_case=False))
    (folder / "1_Pooling").mkdir()
    modes = {f"pooling_mode_{m}": False for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens",
                                                  "weightedmean_tokens", "lasttoken")}
    modes[{"mean": "pooling_mode_mean_tokens", "last": "pooling_mode_lasttoken"}[pooling]] = True
    # include_prompt False: an instruction (a prompt) is attended to but not pooled, as in l2v.
    _write_json(folder / "1_Pooling" / "config.json", dict(word_embedding_dimension=dim, **modes, include_prompt=False))


def _normalize_module(folder: Path, idx: int) -> dict:
    (Path(folder) / f"{idx}_Normalize").mkdir()
    _write_json(Path(folder) / f"{idx}_Normalize" / "config.json", {})
    return dict(idx=idx, name=str(idx), path=f"{idx}_Normalize", type="sentence_transformers.models.Normalize")


def write_model_files(folder, config: ModelConfig, state: dict, tokenizer_dir, settings: dict):
    """What l2v and llm2vec read: weights, config, tokenizer, l2v_encoder.json, llm2vec_config.json.
    (sentence-transformers' own files come from `export_model`, or from its `save`.)"""
    folder = Path(folder)
    save_model_folder(folder, config, state)
    _set_dtype(folder / "config.json", settings["dtype"])
    for name in TOKENIZER_FILES:
        if (Path(tokenizer_dir) / name).is_file():
            shutil.copyfile(Path(tokenizer_dir) / name, folder / name)
    _plain_config(folder / "config.json", causal=settings["causal"])
    _write_tokenizer_pad(folder / "tokenizer_config.json", Path(tokenizer_dir))
    _write_json(folder / ENCODER_FILE, settings)
    if settings["pooling"] == "eos":  # llm2vec's eos_token appends its own string per family, not this EOS
        print("no llm2vec_config.json: llm2vec's eos_token pooling appends a fixed string per family "
              "(' </s>' for every LLaMA), not this tokenizer's EOS")
        return
    # doc_max_length = max_length: llm2vec cuts documents (by words) at doc_max_length, 400 if unset.
    _write_json(folder / "llm2vec_config.json", dict(pooling_mode=LLM2VEC_POOLING[settings["pooling"]],
                                                     max_length=settings["max_length"],
                                                     doc_max_length=settings["max_length"], skip_instruction=True))


def _plain_config(config_file: Path, causal: bool):
    """config.json as transformers reads a bidirectional decoder: "is_causal": false. Sliding windows are
    widened to the whole context, as l2v's bidirectional model attends everywhere (transformers would
    otherwise keep a window in both directions, which LLM2Vec never trained). The window only bites past
    its length (Mistral's: 4096 tokens), so l2v reading such an export causally differs only there."""
    d = json.loads(config_file.read_text())
    d["is_causal"] = causal  # always said: a causal export of an earlier (bidirectional) export stays causal
    if not causal:
        if d.get("sliding_window"):
            d["sliding_window"] = max(d["sliding_window"], d.get("max_position_embeddings") or 0)
    config_file.write_text(json.dumps(d, indent=2) + "\n")


def _write_tokenizer_pad(config_file: Path, tokenizer_dir: Path):
    """transformers pads a batch only with a named pad token: name the one l2v pads with, if none is."""
    from ..tokenizer import Tokenizer

    d = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if d.get("pad_token") is None:
        tok = Tokenizer(tokenizer_dir)
        d["pad_token"] = tok.tk.id_to_token(tok.pad_id)
        config_file.write_text(json.dumps(d, indent=2) + "\n")


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


def _read_scores(scores) -> dict | None:
    if scores is None or isinstance(scores, dict):
        return scores
    record = read_json(Path(scores))
    if not isinstance(record, dict) or not isinstance(record.get("averages"), dict):
        raise L2VError(f"{scores}: not an l2v eval record (no averages); make one with `l2v eval --output`")
    return record


def _known_base(model_dir: Path) -> str | None:
    """The Hub id of a model l2v fetched itself (the only base it can name for sure)."""
    from ..sources.fetch import SMOLLM2_DIRNAME

    return "HuggingFaceTB/SmolLM2-135M-Instruct" if model_dir.name == SMOLLM2_DIRNAME else None


def _adapter_lines(adapters) -> list[str]:
    """One line per merged adapter: its folder, LoRA rank and alpha, and the steps its log shows."""
    lines = []
    for a in adapters:
        a, bits = Path(a), []
        if (a / "adapter_config.json").is_file():
            cfg = read_json(a / "adapter_config.json")
            bits.append(f"LoRA r={cfg.get('r')}, alpha={cfg.get('lora_alpha')}")
        if (a / "log.jsonl").is_file():
            steps = [json.loads(x).get("step", 0) for x in (a / "log.jsonl").read_text().splitlines() if x.strip()]
            bits.append(f"{max(steps, default=0)} steps")
        lines.append(f"- `{a.name}`" + (f" ({', '.join(bits)})" if bits else ""))
    return lines or ["- none: the base model as it is"]


def _card_metadata(name: str, adapters, base_model, license, record, datasets=()) -> tuple[list[str], str]:
    """The Hub's YAML front matter (lines), and the scores paragraph when an eval record is given."""
    meta = ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
            "tags: [sentence-transformers, feature-extraction, sentence-similarity, llm2vec, l2v]", "language: [en]"]
    if base_model:
        meta.append(f"base_model: {base_model}")
    if license or base_model == "HuggingFaceTB/SmolLM2-135M-Instruct":
        meta.append(f"license: {license or 'apache-2.0'}")  # SmolLM2's own license
    if datasets:
        meta.append(f"datasets: [{', '.join(datasets)}]")
    scores = ""
    if record:
        suite = record.get("suite") or "tasks"
        meta += ["model-index:", f"- name: {name}", "  results:"]
        for kind, value in record["averages"].items():
            meta += [f"  - task: {{type: {kind}}}", f"    dataset: {{name: {suite}, type: {suite}}}",
                     f"    metrics: [{{type: main_score, value: {100 * value:.2f}}}]"]
        scores = ("\n## Scores\n\n" + f"On {suite} (mean main score × 100 per task type): " +
                  ", ".join(f"{k} {100 * v:.2f}" for k, v in record["averages"].items()) + ".\n")
    meta.append("---")
    return meta, scores


def model_card(name: str, s: dict, config: ModelConfig, adapters=(), base_model: str | None = None,
               license: str | None = None, record: dict | None = None, datasets=()) -> str:
    """README.md with the Hub's YAML front matter, usage for sentence-transformers, transformers and l2v,
    the training steps, the scores if given, and the limitations in plain words."""
    mode = "causal" if s["causal"] else "bidirectional"
    meta, scores = _card_metadata(name, adapters, base_model, license, record, datasets)
    size = s.get("truncate_dim") or config.hidden_size
    cut = f" (the first of {config.hidden_size}, Matryoshka-style)" if s.get("truncate_dim") else ""
    return "\n".join(meta) + f"""

# {name}

A text embedder made with l2v (LLM2Vec from scratch): a {config.model_type} decoder with {mode}
attention, {config.num_hidden_layers} layers, {size}-dimensional embeddings{cut}, {s["pooling"]} pooling,
up to {s["max_length"]} tokens a text, weights in {s["dtype"]}.
Instructions: {s["instructions"]}.

## Use
{_card_usage(name, s)}
## How it was made

From `{s["source"]["model"]}`{f" ({base_model})" if base_model else ""}, with these LoRA adapters merged in order
(LLM2Vec's steps: bidirectional attention, masked next-token prediction, then unsupervised SimCSE):
{chr(10).join(_adapter_lines(adapters))}
{scores}
## Limitations

{chr(10).join(_card_limitations(s, base_model))}
"""


def _card_usage(name: str, s: dict) -> str:
    query = "Given a question, retrieve passages that answer it:"
    standard = s.get("sentence_transformers", "standard modules") == "standard modules"
    trust = "" if standard else ", trust_remote_code=True)  # l2v's module: l2v must be installed"
    out = f"""
```python
from sentence_transformers import SentenceTransformer      # sentence-transformers >= 5 (encode_query)
model = SentenceTransformer("{name}"{trust or ")"}
q = model.encode_query(["how do plants make food?"], prompt="{query}")
d = model.encode_document(["Photosynthesis turns light into sugar."])
model.similarity(q, d)
```
"""
    if standard and s["pooling"] == "mean" and not s.get("truncate_dim") and not s.get("normalize"):
        out += f"""
```python
from transformers import AutoModel, AutoTokenizer           # transformers >= {MIN_TRANSFORMERS}, no l2v
tok, model = AutoTokenizer.from_pretrained("{name}"), AutoModel.from_pretrained("{name}")
batch = tok(["Photosynthesis turns light into sugar."], return_tensors="pt", padding=True, truncation=True,
            max_length={s["max_length"]})
hidden = model(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1)
embedding = (hidden * mask).sum(1) / mask.sum(1)            # mean pooling over the text's tokens
```
"""
    out += f"""
```python
from l2v import Encoder                                     # l2v
enc = Encoder.from_pretrained("{name}")
q = enc.encode_query(["how do plants make food?"], instruction="{query}")
```
"""
    if s["pooling"] != "eos":
        out += (f"\nThe official llm2vec reads it too (`LLM2Vec.from_pretrained(\"{name}\", enable_bidirectional="
                f"{not s['causal']})`, with llm2vec_config.json's pooling and lengths). It joins a query as "
                f"`instruction.strip() + \" \" + text` and pools as many trailing tokens as the text has alone, "
                f"so its queries can differ by one pooled token where the tokenizer merges that space into the "
                f"text's first word.\n")
    if not s["causal"]:
        out += (f"\n`config.json` says `\"is_causal\": false`: transformers older than {MIN_TRANSFORMERS} ignore "
                f"that key and would run the model causally, with other embeddings and no error; "
                f"sentence-transformers >= 6 refuses them (the folder's requirements).\n")
    if not standard:
        why = s["sentence_transformers"].removeprefix("l2v's module: ")
        out += f"\nsentence-transformers reads this folder through l2v's own module: {why}.\n"
    return out


def _card_limitations(s: dict, base_model: str | None) -> list[str]:
    lines = []
    if base_model == "HuggingFaceTB/SmolLM2-135M-Instruct":
        lines.append("- The base model is SmolLM2-135M as l2v fetches it: dequantised from a 4-bit GGUF file, "
                     "not the original weights, and small.")
    lines += ["- The training budget is what \"How it was made\" lists (steps per adapter); on l2v's own suites "
              "the unsupervised recipe beats causal mean pooling on average, mostly through retrieval, and can "
              "lose to it on pair classification and on long-document similarity. Check it on your own task.",
              f"- Texts longer than {s['max_length']} tokens are cut. An empty text, or one the instruction "
              "swallows whole, is embedded by l2v as its EOS token, where sentence-transformers pools nothing "
              "(a zero vector)."]
    return lines
