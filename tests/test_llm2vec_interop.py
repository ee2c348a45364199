"""Adapters move between l2v and the official llm2vec 0.2.3 and embed the same texts the same way.

llm2vec pins transformers<=4.44.2 and l2v's tests run transformers 5, so llm2vec runs in a virtual
environment of its own (built once, cached in .cache/llm2vec-venv or $L2V_LLM2VEC_VENV) through
tests/llm2vec_side.py. Both sides read one base folder: a tiny random LLaMA written by transformers
4.44, with the tests' byte-level BPE tokenizer.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CORPUS, write_tiny_tokenizer

import l2v
from l2v.formats.peft import convert_adapter, save_adapter
from l2v.lora import apply_lora, lora_modules, merge_lora

ROOT = Path(__file__).resolve().parents[1]
SIDE = Path(__file__).with_name("llm2vec_side.py")
# llm2vec's own pins, plus what they imply for a 2024 stack: tokenizers and huggingface-hub as
# transformers 4.44 requires, peft of the same months. torch (and numpy, safetensors, accelerate)
# come from the system through --system-site-packages: no multi-GB CUDA torch download.
REQUIREMENTS = ["transformers==4.44.2", "tokenizers>=0.19,<0.20", "peft==0.12.0", "huggingface-hub<1.0"]

DOCUMENTS = list(dict.fromkeys(TINY_CORPUS))[:7]  # 6 to 10 tokens: batches are left-padded
INSTRUCTIONS = ["Retrieve a passage that answers the question", "Find the news article "]
QUERIES = [[INSTRUCTIONS[i % 2], text] for i, text in enumerate(DOCUMENTS[:4])]
ITEMS = DOCUMENTS + QUERIES  # what llm2vec encodes
# llm2vec embeds a query as the one string `instruction.strip() + " " + text` and pools its last
# len(tokenize(text)) tokens. l2v tokenises `instruction + text` as one string too and pools what
# follows the instruction's own tokens (sentence-transformers' rule). With this BPE a sentence's first
# word has no "Ġword" merge (the corpus never has it after a space), so the joint string's space is a
# token of its own before the text's, which neither pools (with SmolLM2's BPE the two differ by a token):
# it belongs with the instruction. test_both_feed_the_same_tokens checks ids and pooled counts.
L2V_ITEMS = DOCUMENTS + [[instruction.strip() + " ", text] for instruction, text in QUERIES]
MATCH = 0.9999  # fp32 on both sides; what differs is summation order
VERSIONS = """import importlib.metadata as m, json, llm2vec, transformers
print(json.dumps(dict(where=transformers.__file__, **{p: m.version(p) for p in
      ("transformers", "llm2vec", "peft", "tokenizers", "huggingface-hub", "torch", "numpy", "safetensors")})))"""


@pytest.fixture(scope="session")
def venv_python():
    """The llm2vec venv's python: built on first use (~20 s with the wheels cached), then reused."""
    folder = Path(os.environ.get("L2V_LLM2VEC_VENV") or ROOT / ".cache" / "llm2vec-venv").resolve()
    python, marker = folder / "bin" / "python", folder / "l2v-ready.json"
    if not marker.is_file():
        shutil.rmtree(folder, ignore_errors=True)  # what an interrupted build left
        start = time.perf_counter()
        for step in ([sys.executable, "-m", "venv", "--system-site-packages", folder],
                     [python, "-m", "pip", "install", "-q", *REQUIREMENTS],
                     [python, "-m", "pip", "install", "-q", "--no-deps", "llm2vec==0.2.3"]):
            r = subprocess.run([str(x) for x in step], capture_output=True, text=True, timeout=1800)
            if r.returncode:
                pytest.skip(f"cannot build the llm2vec venv in {folder} (no network?): {r.stderr[-800:]}")
        # The venv's site-packages must shadow the system's transformers 5 and peft.
        versions = json.loads(side_run(python, "-c", VERSIONS, script=False).stdout)
        assert versions["transformers"] == "4.44.2" and versions["where"].startswith(str(folder)), versions
        versions["build_seconds"] = round(time.perf_counter() - start, 1)
        marker.write_text(json.dumps(versions, indent=2))
    print(f"llm2vec venv {folder}: {marker.read_text()}")
    return python


def side_run(python, *args, script=True):
    """Run the side script (or python -c) in the venv; fail with its stderr if it fails."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | dict(HF_HUB_OFFLINE="1")
    r = subprocess.run([str(python), *([str(SIDE)] if script else []), *map(str, args)], capture_output=True,
                       text=True, env=env, timeout=300)
    if r.returncode:
        pytest.fail(f"llm2vec side failed: {' '.join(map(str, args))[:200]}\n{r.stderr[-3000:]}")
    return r


def official(python, base, out_dir, adapters=(), tokens=False, items=ITEMS):
    """llm2vec's embeddings of `items`; with tokens, also out_dir/tokens.json: what it fed the model."""
    out_dir.mkdir()
    (out_dir / "items.json").write_text(json.dumps(items))
    extra = ["--tokens", out_dir / "tokens.json"] if tokens else []
    side_run(python, "encode", base, out_dir / "items.json", out_dir / "emb.npy", *adapters, *extra)
    return np.load(out_dir / "emb.npy")


def ours(base, adapters=()):
    return l2v.Encoder.from_pretrained(base, adapters=list(adapters)).encode(L2V_ITEMS, batch_size=4,
                                                                             show_progress_bar=False)


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def assert_same(mine, theirs, base_emb, what):
    """l2v's and llm2vec's embeddings agree, and the adapters moved them (else the check is weak)."""
    low = cosines(mine, theirs).min()
    print(f"{what}: min cosine {low:.7f}")
    assert low >= MATCH, f"{what}: min cosine {low:.6f}"
    assert cosines(base_emb, theirs).min() < 0.99, f"{what}: the adapters barely change the embeddings"


@pytest.fixture(scope="module")
def base(venv_python, tmp_path_factory):
    """(base folder, llm2vec's embeddings of it without adapters, what llm2vec fed the model)."""
    folder = tmp_path_factory.mktemp("llm2vec-interop") / "base"
    side_run(venv_python, "make-base", folder)
    write_tiny_tokenizer(folder)
    # tokenizers >= 0.20 writes BPE merges as pairs; the 0.19 that transformers 4.44 needs reads only "a b"
    # strings (and newer ones read both). Byte-level tokens hold no spaces, so the join is lossless.
    tok = json.loads((folder / "tokenizer.json").read_text())
    tok["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]]
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    emb = official(venv_python, folder, folder.parent / "official-base", tokens=True)
    return folder, emb, json.loads((folder.parent / "official-base" / "tokens.json").read_text())


def test_both_feed_the_same_tokens(base):
    """transformers 4.44's tokenizer (a LlamaTokenizerFast, from config.json's model type, adding BOS
    as tokenizer_config.json asks) and l2v's give the same ids, and both pool the same tokens."""
    folder, emb, tokens = base
    enc = l2v.Encoder.from_pretrained(folder)
    for item, theirs in zip(L2V_ITEMS, tokens):
        instruction, text = ("", item) if isinstance(item, str) else item
        ids, n_prefix = enc.layout(*enc.tokenizer.encode_batch([instruction, text]))
        assert ids == theirs["ids"], item
        assert len(ids) - n_prefix == theirs["pooled"], item
    assert all(t["ids"][0] == enc.tokenizer.bos_id for t in tokens)  # transformers 4.44 adds the BOS too
    # Without adapters the two bidirectional models agree too: the adapter tests start from here.
    assert cosines(ours(folder), emb).min() >= MATCH


def randomize_lora(model, seed):
    """Random A and B (B starts at zero), so an adapter that is not read shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_modules(model).values():
            for w in (m.lora_A.weight, m.lora_B.weight):
                w.copy_(torch.randn(w.shape, generator=g) * 0.05)


def test_official_adapters_load_in_l2v(base, venv_python):
    folder, base_emb, _ = base
    mntp, simcse = folder.parent / "official-mntp", folder.parent / "official-simcse"
    side_run(venv_python, "make-adapters", folder, mntp, simcse)  # LLM2Vec.save: keys base_model.model.layers…
    theirs = official(venv_python, folder, folder.parent / "official-adapters", [mntp, simcse])
    mine = ours(folder, [mntp, simcse])
    assert_same(mine, theirs, base_emb, "official adapters → l2v")


@pytest.fixture(scope="module")
def l2v_adapters(base):
    """An l2v MNTP + SimCSE pair in llm2vec's layout: MNTP saved in l2v's default (causal_lm) layout and
    converted, SimCSE saved with layout="model"; → (mntp, simcse, the unconverted mntp)."""
    folder = base[0]
    out = folder.parent
    model = l2v.load_model(folder, causal=False)
    apply_lora(model, r=8, alpha=16, dropout=0.0)
    randomize_lora(model, seed=1)
    save_adapter(model, out / "l2v-mntp-causal-lm", base_model=str(folder))
    convert_adapter(out / "l2v-mntp-causal-lm", out / "l2v-mntp", layout="model")
    merge_lora(model)  # SimCSE trains on top of the merged MNTP model
    apply_lora(model, r=8, alpha=16, dropout=0.0)
    randomize_lora(model, seed=2)
    save_adapter(model, out / "l2v-simcse", base_model=str(folder), layout="model")
    return out / "l2v-mntp", out / "l2v-simcse", out / "l2v-mntp-causal-lm"


def test_l2v_adapters_load_in_llm2vec(base, venv_python, l2v_adapters):
    folder, base_emb, _ = base
    mntp, simcse, _ = l2v_adapters
    theirs = official(venv_python, folder, folder.parent / "l2v-adapters", [mntp, simcse])
    mine = ours(folder, [mntp, simcse])
    assert_same(mine, theirs, base_emb, "l2v adapters → llm2vec")


def test_causal_lm_layout_is_ignored_by_llm2vec(base, venv_python, l2v_adapters):
    """Why layout="model" exists: peft over llm2vec's LlamaBiModel finds no module for the default
    layout's base_model.model.model.layers… keys and leaves the model as it was (peft 0.12 says
    nothing; later versions warn of missing adapter keys)."""
    folder, base_emb, _ = base
    theirs = official(venv_python, folder, folder.parent / "causal-lm-adapter", [l2v_adapters[2]])
    np.testing.assert_allclose(theirs, base_emb, rtol=0, atol=1e-6)


def test_an_l2v_export_loads_in_llm2vec(base, venv_python, l2v_adapters, tmp_path):
    """`l2v export` merges adapters in any layout into one folder; llm2vec reads it as a plain model
    (with its llm2vec_config.json) and embeds as l2v does."""
    from l2v.formats.export import export_model

    folder, base_emb, _ = base
    mntp_causal_lm, simcse = l2v_adapters[2], l2v_adapters[1]
    out = export_model(folder, tmp_path / "export", adapters=[mntp_causal_lm, simcse])
    assert json.loads((out / "llm2vec_config.json").read_text())["pooling_mode"] == "mean"
    theirs = official(venv_python, out, tmp_path / "official-export")
    mine = ours(folder, [mntp_causal_lm, simcse])
    assert_same(mine, theirs, base_emb, "l2v export → llm2vec")


@pytest.mark.parametrize("pooling", ["mean", "weighted_mean", "last", "bos"])
def test_llm2vec_reads_an_export_whole_past_400_tokens(base, venv_python, l2v_adapters, tmp_path, pooling):
    """Issue 38: llm2vec cuts a document by words at doc_max_length (400 when unset). The export's
    llm2vec_config.json sets it to the exported max length, so a 600-token text is cut by tokens at 512,
    as l2v cuts it, in every pooling the export writes a config for."""
    from l2v.formats.export import export_model

    folder, base_emb, _ = base
    out = export_model(folder, tmp_path / "export", adapters=[l2v_adapters[2], l2v_adapters[1]], pooling=pooling)
    config = json.loads((out / "llm2vec_config.json").read_text())
    assert config["doc_max_length"] >= config["max_length"] == 512, config
    enc = l2v.Encoder.from_pretrained(out)
    texts = [" ".join(DOCUMENTS * 12), " ".join(reversed(DOCUMENTS * 11)), DOCUMENTS[0]]
    lengths = [len(enc.tokenizer.encode(t)) for t in texts]
    assert 550 < min(lengths[:2]) and max(lengths[:2]) < 800, lengths
    theirs = official(venv_python, out, tmp_path / "official", items=texts)
    with pytest.warns(UserWarning, match="truncated"):
        mine = enc.encode(texts, show_progress_bar=False)
    low = cosines(mine, theirs).min()
    assert low >= MATCH, f"{pooling}: texts of {lengths} tokens, l2v against llm2vec: min cosine {low:.7f}"
