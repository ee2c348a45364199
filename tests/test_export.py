"""Issue 28: an l2v embedder used anywhere. `l2v export` writes one folder; l2v, sentence-transformers
(the real package) and mteb 2.x read it and give the same embeddings and scores as l2v's Encoder.
(The official llm2vec's round trips: tests/test_llm2vec_interop.py.)"""

import json

import numpy as np
import pytest
import torch
from conftest import SMOLLM2_FOLDER, TINY_CORPUS, write_folder

import l2v
from l2v.formats.export import export_model
from l2v.formats.peft import save_adapter
from l2v.lora import apply_lora, merge_lora
from l2v.tools.cli import main as cli

TEXTS = list(dict.fromkeys(TINY_CORPUS))[:7] + ["Paris", ""]  # lengths 1–10 tokens, and an empty text
INSTRUCTION = "Retrieve a sentence about the same thing:"


def min_cosine(a, b) -> float:
    a, b = torch.as_tensor(np.asarray(a, dtype=np.float32)), torch.as_tensor(np.asarray(b, dtype=np.float32))
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).min().item()


@pytest.fixture(scope="module")
def adapters(tiny_encoder_folder, tmp_path_factory):
    """An MNTP-then-SimCSE pair of random adapters (B ≠ 0, so merging them changes the model)."""
    root = tmp_path_factory.mktemp("adapters")
    model = l2v.load_model(tiny_encoder_folder, causal=False)
    folders = []
    for i, name in enumerate(["mntp", "simcse"]):
        apply_lora(model, r=4, alpha=8)
        torch.manual_seed(10 + i)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.05)
        save_adapter(model, root / name)
        merge_lora(model)
        folders.append(root / name)
    return folders


@pytest.fixture(scope="module")
def exported(tiny_encoder_folder, adapters, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "tiny-l2v"
    export_model(tiny_encoder_folder, out, adapters=adapters, max_length=64, prompts={"query": INSTRUCTION})
    return out


@pytest.fixture(scope="module")
def reference(tiny_encoder_folder, adapters):
    """l2v's Encoder on the base folder with the adapters merged as it loads: what every reader must match."""
    return l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=adapters, max_length=64)


# ---------------------------------------------------------------- the folder, read by l2v


def test_export_reads_back_without_adapters(exported, reference, tiny_encoder_folder):
    files = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "l2v_encoder.json", "modules.json",
            "config_sentence_transformers.json", "llm2vec_config.json", "README.md"} <= files
    settings = json.loads((exported / "l2v_encoder.json").read_text())
    assert settings["causal"] is False and settings["pooling"] == "mean" and settings["max_length"] == 64
    enc = l2v.Encoder.from_pretrained(exported)
    assert np.abs(enc.encode(TEXTS) - reference.encode(TEXTS)).max() < 1e-6
    base = l2v.Encoder.from_pretrained(tiny_encoder_folder, max_length=64)  # the adapters do change the embeddings
    assert min_cosine(base.encode(TEXTS), reference.encode(TEXTS)) < 0.99


def test_export_keeps_attention_pooling_and_dtype(tiny_encoder_folder, adapters, reference, tmp_path):
    out = export_model(tiny_encoder_folder, tmp_path / "eos", adapters=adapters, causal=True, pooling="eos",
                       max_length=32, dtype="bfloat16")
    enc = l2v.Encoder.from_pretrained(out)
    assert enc.model.causal and enc.pooling == "eos" and enc.max_length == 32
    assert enc.model.lm_head.weight.dtype == torch.bfloat16
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert json.loads((out / "llm2vec_config.json").read_text())["pooling_mode"] == "eos_token"
    want = l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=adapters, causal=True, pooling="eos",
                                       max_length=32)
    cos = min_cosine(enc.encode(TEXTS), want.encode(TEXTS))
    assert cos > 0.999, f"bf16 export against fp32: min cosine {cos:.5f}"
    # what a caller passes still wins over the folder's settings
    assert l2v.Encoder.from_pretrained(out, causal=False, pooling="mean").pooling == "mean"


def test_export_cli_and_its_refusals(tiny_encoder_folder, adapters, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["export", "--model", str(tiny_encoder_folder), "--adapter", str(adapters[0]), "--adapter",
            str(adapters[1]), "--pooling", "weighted_mean", "--max-length", "64", "--out", str(out)]
    assert cli(args) is None
    assert "weighted_mean pooling" in capsys.readouterr().out
    # `l2v encode` on the folder uses the folder's pooling without being told
    (tmp_path / "in.txt").write_text("\n".join(TEXTS[:3]) + "\n")
    assert cli(["encode", "--model", str(out), "--input", str(tmp_path / "in.txt"), "--output",
                str(tmp_path / "e.npy")]) is None
    want = l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=adapters, pooling="weighted_mean", max_length=64)
    assert np.abs(np.load(tmp_path / "e.npy") - want.encode(TEXTS[:3])).max() < 1e-5
    capsys.readouterr()
    assert cli(args) == 2  # exists: never replaced unasked
    assert "exists" in capsys.readouterr().err
    assert cli([*args, "--overwrite"]) is None
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert cli([*args[:-1], str(foreign), "--overwrite"]) == 2  # not an export: left alone
    assert (foreign / "notes.txt").read_text() == "mine"
    assert cli([*args[:-1], str(tiny_encoder_folder / "inside")]) == 2
    assert "inside the model folder" in capsys.readouterr().err


# ---------------------------------------------------------------- sentence-transformers


@pytest.fixture(scope="module")
def st_model(exported):
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(exported), trust_remote_code=True, device="cpu")


def test_sentence_transformers_gives_l2vs_embeddings(st_model, reference):
    cos = min_cosine(st_model.encode(TEXTS), reference.encode(TEXTS))
    assert cos >= 0.99999, f"plain texts: min cosine {cos:.7f}"
    # encode_query: the folder's "query" prompt is the instruction, attended to and not pooled
    got = st_model.encode_query(TEXTS)
    cos = min_cosine(got, reference.encode(TEXTS, instruction=INSTRUCTION))
    assert cos >= 0.99999, f"queries: min cosine {cos:.7f}"
    assert min_cosine(got, reference.encode(TEXTS)) < 0.9999  # the instruction did something
    cos = min_cosine(st_model.encode_query(TEXTS, prompt="Say:"), reference.encode(TEXTS, instruction="Say:"))
    assert cos >= 0.99999, f"an explicit prompt: min cosine {cos:.7f}"
    cos = min_cosine(st_model.encode_document(TEXTS), reference.encode_document(TEXTS))
    assert cos >= 0.99999, f"documents: min cosine {cos:.7f}"
    assert st_model.similarity_fn_name == "cosine" and st_model.get_embedding_dimension() == reference.dim
    a, b = st_model.encode(TEXTS[:3]), st_model.encode(TEXTS[3:6])
    np.testing.assert_allclose(st_model.similarity(a, b).numpy(), reference.similarity(a, b), atol=1e-6)


def test_sentence_transformers_6_asks_to_trust_l2vs_module(exported):
    st = pytest.importorskip("sentence_transformers")
    if int(st.__version__.split(".")[0]) < 6:
        pytest.skip("sentence-transformers < 6 imports installed modules without the flag")
    with pytest.raises(ValueError, match="trust_remote_code"):
        st.SentenceTransformer(str(exported), device="cpu")


def test_sentence_transformers_fine_tunes_and_saves_it(exported, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    datasets = pytest.importorskip("datasets")
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = st.SentenceTransformer(str(exported), trust_remote_code=True, device="cpu")
    before = model.encode(TEXTS)
    pairs = datasets.Dataset.from_dict({"anchor": TEXTS[:7], "positive": [t.lower() for t in TEXTS[:7]]})
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=3,
                                                per_device_train_batch_size=4, learning_rate=1e-3,
                                                report_to=[], save_strategy="no", use_cpu=True, seed=0)
    SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs,
                               loss=MultipleNegativesRankingLoss(model)).train()
    after = model.encode(TEXTS)
    assert min_cosine(before, after) < 0.9999, "three steps at lr 1e-3 changed nothing"
    model.save(str(tmp_path / "tuned"))
    again = l2v.Encoder.from_pretrained(tmp_path / "tuned")  # the tuned weights, read back by l2v
    cos = min_cosine(again.encode(TEXTS), after)
    assert cos >= 0.99999, f"fine-tuned, saved and read by l2v: min cosine {cos:.7f}"


# ---------------------------------------------------------------- sentence-transformers' names in Encoder.encode


def test_encode_speaks_sentence_transformers(exported, reference):
    enc = l2v.Encoder.from_pretrained(exported)
    np.testing.assert_array_equal(enc.encode(TEXTS, prompt="Say:"), enc.encode(TEXTS, instruction="Say:"))
    np.testing.assert_array_equal(enc.encode(TEXTS, prompt_name="query"), enc.encode(TEXTS, instruction=INSTRUCTION))
    np.testing.assert_array_equal(enc.encode_query(TEXTS), enc.encode(TEXTS, instruction=INSTRUCTION))
    np.testing.assert_array_equal(enc.encode(TEXTS, normalize_embeddings=True), enc.encode(TEXTS, normalize=True))
    t = enc.encode(TEXTS, convert_to_tensor=True)
    assert isinstance(t, torch.Tensor) and t.shape == (len(TEXTS), enc.dim)
    with pytest.raises(ValueError, match="give one of instruction, prompt, prompt_name"):
        enc.encode(TEXTS, prompt="a", instruction="b")
    with pytest.raises(ValueError, match="no prompt named 'passage': this encoder has 'query', 'document'"):
        enc.encode(TEXTS, prompt_name="passage")
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        enc.encode(TEXTS, precision="int4")


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_precision_equals_sentence_transformers_quantization(reference, precision):
    quantization = pytest.importorskip("sentence_transformers.util.quantization")
    floats = reference.encode(TEXTS)
    got = reference.encode(TEXTS, precision=precision)
    want = quantization.quantize_embeddings(floats, precision=precision)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- mteb 2.x


def test_mteb_model_meta_is_filled_from_the_model(exported):
    pytest.importorskip("mteb")
    from l2v.formats.mteb import L2VForMTEB

    wrapper = L2VForMTEB.from_pretrained(exported, license="apache-2.0")
    meta = wrapper.mteb_model_meta
    model = wrapper.encoder.model
    assert meta.name == "l2v/tiny-l2v" and meta.embed_dim == 48 and meta.max_tokens == 64
    assert meta.n_parameters == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert meta.n_embedding_parameters == 400 * 48
    assert meta.similarity_fn_name.value == "cosine" and meta.use_instructions is True
    assert meta.languages == ["eng-Latn"] and meta.license == "apache-2.0" and meta.training_datasets == set()
    assert "PyTorch" in meta.framework and meta.memory_usage_mb > 0


def test_mteb_instructions_follow_the_official_table():
    pytest.importorskip("mteb")
    from mteb.types import PromptType

    from l2v.formats.mteb import task_instruction

    class Task:
        def __init__(self, name, type, prompt=None):
            self.name, self.type, self.prompt = name, type, prompt

    assert task_instruction(Task("ArguAna", "Retrieval"), PromptType.query) == \
        "Given a claim, find documents that refute the claim:"
    assert task_instruction(Task("CQADupstackUnixRetrieval", "Retrieval"), PromptType.query).startswith(
        "Given a question, retrieve detailed question descriptions from Stackexchange")
    assert task_instruction(Task("ArguAna", "Retrieval"), PromptType.document) == ""
    assert task_instruction(Task("MySTS", "STS")) == "Retrieve semantically similar text:"
    assert task_instruction(Task("MyTask", "Clustering", prompt="Identify the topic.")) == "Identify the topic:"
    assert task_instruction(Task("MySTS", "STS"), None, {"STS": "Say it"}) == "Say it:"


def mteb_sts_score(model, rows) -> float:
    """mteb.evaluate's main score (cosine Spearman) for an STS task built in memory from `rows`."""
    import mteb
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    class InMemorySTS(AbsTaskSTS):
        metadata = TaskMetadata(
            type="STS", name="L2VExportCheck", main_score="cosine_spearman", description="l2v check",
            reference="https://example.org", dataset={"path": "NA", "revision": "NA"}, category="t2t",
            eval_splits=["test"], eval_langs=["eng-Latn"], date=("2024-01-01", "2024-01-01"), dialect=["Written"],
            domains=[], task_subtypes=[], license="cc-by-4.0", annotations_creators="derived", modalities=["text"],
            sample_creation="found", bibtex_citation="")

        def load_data(self, **kwargs):
            self.dataset = DatasetDict({"test": Dataset.from_list(rows)})
            self.data_loaded = True

    return mteb.evaluate(model, [InMemorySTS()], cache=None).task_results[0].scores["test"][0]["cosine_spearman"]


def test_mteb_evaluate_equals_l2vs_evaluator(exported, tmp_path):
    pytest.importorskip("mteb")
    from l2v.evaluate import evaluate
    from l2v.formats.mteb import TYPE_INSTRUCTIONS, L2VForMTEB

    rng = np.random.default_rng(0)
    words = " ".join(TINY_CORPUS[:7]).replace(".", "").split()
    rows = [{"sentence1": " ".join(rng.choice(words, 6)), "sentence2": " ".join(rng.choice(words, 6)),
             "score": float(rng.integers(0, 6))} for _ in range(40)]
    model = L2VForMTEB.from_pretrained(exported)
    theirs = mteb_sts_score(model, rows)
    folder = write_folder(tmp_path, "sts", "sts", {"data.jsonl": rows}, instruction=TYPE_INSTRUCTIONS["STS"])
    ours = evaluate(model.encoder, [folder], show_progress=False)[0]["main_score"]
    assert ours == pytest.approx(theirs, abs=1e-6), f"l2v {ours:.6f} vs mteb {theirs:.6f}"


# ---------------------------------------------------------------- the same on the real model


@pytest.mark.skipif(not SMOLLM2_FOLDER.is_dir(), reason="run `l2v fetch smollm2` first")
def test_smollm2_export_everywhere(tmp_path):
    """SmolLM2 with an adapter merged, exported in its own bf16: sentence-transformers matches l2v's
    Encoder on real text, and mteb.evaluate matches l2v's evaluator on WordSim-353 (l2v-mini-quick)."""
    st = pytest.importorskip("sentence_transformers")
    pytest.importorskip("mteb")
    from l2v.evaluate import evaluate
    from l2v.formats.mteb import TYPE_INSTRUCTIONS, L2VForMTEB
    from l2v.sources.suites import suite_folder

    task = suite_folder("l2v-mini-quick") / "wordsim353-sts"
    if not (task / "data.jsonl").is_file():
        pytest.skip("run `l2v fetch l2v-mini` first")
    model = l2v.load_model(SMOLLM2_FOLDER, causal=False)
    apply_lora(model, r=8, alpha=16, targets=("q_proj", "v_proj"))
    torch.manual_seed(0)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.02)
    save_adapter(model, tmp_path / "adapter")
    out = export_model(SMOLLM2_FOLDER, tmp_path / "smollm2-l2v", adapters=[tmp_path / "adapter"],
                       prompts={"query": INSTRUCTION})
    rows = [json.loads(line) for line in (task / "data.jsonl").read_text().splitlines()][:60]
    texts = [r["sentence1"] for r in rows[:30]] + list(dict.fromkeys(TINY_CORPUS))[:7]

    enc = l2v.Encoder.from_pretrained(out)
    direct = l2v.Encoder.from_pretrained(SMOLLM2_FOLDER, adapters=[tmp_path / "adapter"])
    cos = merged = min_cosine(enc.encode(texts), direct.encode(texts))  # bf16 weights stored once, merged in fp32
    assert cos >= 0.999, f"export (bf16) vs merging at load time: min cosine {cos:.6f}"
    model = st.SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
    for what, got, want in [("plain", model.encode(texts), enc.encode(texts)),
                            ("query", model.encode_query(texts), enc.encode_query(texts)),
                            ("document", model.encode_document(texts), enc.encode_document(texts))]:
        cos = min_cosine(got, want)
        print(f"SmolLM2 export, {what}: sentence-transformers vs l2v min cosine {cos:.7f}")
        assert cos >= 0.99999, f"SmolLM2 export, {what} texts: sentence-transformers vs l2v min cosine {cos:.7f}"

    wrapper = L2VForMTEB.from_pretrained(out)
    theirs = mteb_sts_score(wrapper, rows)
    folder = write_folder(tmp_path, "ws", "sts", {"data.jsonl": rows}, instruction=TYPE_INSTRUCTIONS["STS"])
    ours = evaluate(wrapper.encoder, [folder], show_progress=False)[0]["main_score"]
    print(f"SmolLM2 WordSim-353 (60 pairs): l2v {ours:.6f}, mteb {theirs:.6f}; export vs load-time merge {merged:.6f}")
    assert ours == pytest.approx(theirs, abs=1e-6), f"SmolLM2 WordSim-353: l2v {ours:.6f} vs mteb {theirs:.6f}"
