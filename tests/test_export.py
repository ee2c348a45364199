"""Issue 28: an l2v embedder used anywhere. `l2v export` writes one folder; l2v, sentence-transformers
(the real package) and mteb 2.x read it and give the same embeddings and scores as l2v's Encoder.
(The official llm2vec's round trips: tests/test_llm2vec_interop.py.)"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMOLLM2_FOLDER, TINY_CORPUS, transformers, write_folder, write_tiny_tokenizer

import l2v
from l2v.formats.export import export_model
from l2v.runtime.checks import L2VError
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
    # llm2vec's eos_token appends " </s>" (LLaMA) rather than the tokenizer's EOS: no llm2vec_config.json
    assert not (out / "llm2vec_config.json").exists()
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


SIDE = Path(__file__).with_name("st_side.py")
LONG = [" ".join(TINY_CORPUS) * 2, " ".join(reversed(TINY_CORPUS))]  # well past the export's 64 tokens
# The empty text is left out: l2v embeds it as its EOS token; sentence-transformers has no token to pool.
# The first text and the prompt's trailing space merge (" the"): only the joint tokenisation of prompt and
# text gives sentence-transformers' ids, so the id check below fails for any other instruction rule.
ST_TEXTS = ["the cat sat on the mat."] + [t for t in TEXTS if t]
PROMPT = INSTRUCTION + " "


@pytest.fixture(scope="module")
def plain_base(tmp_path_factory):
    """A tiny LLaMA whose tokenizer adds no BOS (as SmolLM2's and Qwen's), and two random adapters."""
    cfg = transformers.LlamaConfig(vocab_size=400, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                                   num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, eos_token_id=2,
                                   pad_token_id=0)
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("plain") / "base"
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    write_tiny_tokenizer(folder, add_bos=False)
    model = l2v.load_model(folder, causal=False)
    adapters = []
    for i in range(2):
        apply_lora(model, r=4, alpha=8)
        torch.manual_seed(20 + i)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.05)
        save_adapter(model, folder.parent / f"adapter{i}")
        merge_lora(model)
        adapters.append(folder.parent / f"adapter{i}")
    return folder, adapters


def far_side(folder, tmp_path, prompt=PROMPT) -> dict:
    """What sentence-transformers and AutoModel give for `folder` in a process where l2v cannot be imported."""
    import subprocess
    import sys

    (tmp_path / "request.json").write_text(json.dumps(dict(texts=ST_TEXTS, long=LONG, prompt=prompt)))
    r = subprocess.run([sys.executable, str(SIDE), str(folder), str(tmp_path / "request.json"),
                        str(tmp_path / "far.npz")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(np.load(tmp_path / "far.npz"))


@pytest.mark.parametrize("pooling,normalize", [("mean", False), ("last", True)])
def test_a_plain_folder_loads_without_l2v(plain_base, pooling, normalize, tmp_path):
    """Issue 38: sentence-transformers' standard modules and plain AutoModel, in a process where importing
    l2v fails, embed as Encoder(causal=False) on the source model and adapters: documents, texts cut at
    the exported length, queries with the folder's instruction (the same ids, the same pooled positions)."""
    folder, adapters = plain_base
    out = export_model(folder, tmp_path / "export", adapters=adapters, max_length=64, pooling=pooling,
                       normalize=normalize, prompts={"query": PROMPT})
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"] for m in modules][:2] == ["sentence_transformers.models.Transformer",
                                                "sentence_transformers.models.Pooling"]
    assert json.loads((out / "config.json").read_text())["is_causal"] is False
    far = far_side(out, tmp_path)
    assert list(far["modules"]) == ["Transformer", "Pooling", *(["Normalize"] if normalize else [])]
    assert int(far["max_seq_length"]) == 64
    ref = l2v.Encoder.from_pretrained(folder, adapters=adapters, causal=False, pooling=pooling, max_length=64)
    causal = l2v.Encoder.from_pretrained(folder, adapters=adapters, causal=True, pooling=pooling, max_length=64)
    with pytest.warns(UserWarning, match="truncated"):
        want_long = ref.encode(LONG)
    for what, got, want in (("documents", far["documents"], ref.encode_document(ST_TEXTS)),
                            ("encode", far["plain"], ref.encode(ST_TEXTS)),
                            ("long texts cut at 64 tokens", far["long"], want_long),
                            ("queries", far["queries"], ref.encode(ST_TEXTS, instruction=PROMPT))):
        cos = min_cosine(got, want)
        assert cos >= 0.9999, f"{pooling}: sentence-transformers' {what} against l2v's: min cosine {cos:.7f}"
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(far["documents"], axis=1), 1, atol=1e-5)
    cos = min_cosine(far["documents"], causal.encode(ST_TEXTS))
    assert cos < 0.99, f"{pooling}: the folder embeds as the causal model does (min cosine {cos:.5f}): is_causal ignored?"
    # the ids sentence-transformers feeds for a query, and where its pooling starts, are l2v's
    (ids, n_prefix), = [ref.layout(p, b) for p, b in ref.tokenizer.encode_pairs([PROMPT], ST_TEXTS[:1])]
    assert far["query_ids"].tolist() == ids, f"query ids: sentence-transformers {far['query_ids'].tolist()}, l2v {ids}"
    assert int(far["prompt_length"]) == n_prefix, \
        f"pooled positions: sentence-transformers starts at {int(far['prompt_length'])}, l2v at {n_prefix}"
    if pooling == "mean":
        cos = min_cosine(far["automodel"], ref.encode(ST_TEXTS))
        assert cos >= 0.9999, f"AutoModel + mean pooling against l2v: min cosine {cos:.7f}"


def test_exports_that_standard_modules_cannot_express_say_why(plain_base, tiny_encoder_folder, tmp_path, capsys):
    folder, adapters = plain_base
    for source, pooling, why in ((folder, "eos", "appends an EOS"), (folder, "weighted_mean", "restart"),
                                 (tiny_encoder_folder, "mean", "adds a BOS token")):
        out = export_model(source, tmp_path / f"{pooling}-{source.name}", pooling=pooling, max_length=64)
        assert why in capsys.readouterr().out
        assert json.loads((out / "modules.json").read_text())[0]["type"] == "l2v.formats.st_module.L2VModule"
        assert why in json.loads((out / "l2v_encoder.json").read_text())["sentence_transformers"]
        assert "trust_remote_code=True" in (out / "README.md").read_text()


def test_every_family_reads_is_causal_false(family_folder, tmp_path):
    """transformers (>= 5.2) builds a bidirectional mask from the exported config.json for each of l2v's
    families, sliding-window ones included (the export widens their window to the whole context)."""
    from conftest import FAMILIES

    for name in FAMILIES:
        out = export_model(family_folder(name), tmp_path / name, max_length=64)
        hf = transformers.AutoModel.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
        ours, causal = (l2v.load_model(out, causal=c, dtype=torch.float32) for c in (False, True))
        ids = torch.randint(3, 400, (2, 9), generator=torch.Generator().manual_seed(0))
        mask = torch.ones(2, 9, dtype=torch.long)
        mask[1, :3] = 0
        with torch.no_grad():
            theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state[mask.bool()]
            diff = (theirs - ours(ids, mask)[mask.bool()]).abs().max().item()
            moved = (theirs - causal(ids, mask)[mask.bool()]).abs().max().item()
        assert diff < 1e-4, f"{name}: AutoModel on the export against l2v's bidirectional model: max |diff| {diff:.2e}"
        assert moved > 0.1, f"{name}: the export runs as the causal model does (max |diff| {moved:.2e})"




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


def mteb_sts_score(model, rows, **evaluate_kwargs) -> float:
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

    return mteb.evaluate(model, [InMemorySTS()], cache=None, **evaluate_kwargs).task_results[0].scores["test"][0][
        "cosine_spearman"]


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


def test_the_card_is_hub_ready(plain_base, tmp_path):
    """Issue 38: YAML front matter the Hub reads, the scores when given, usage for three libraries, limitations."""
    folder, adapters = plain_base
    record = {"suite": "l2v-mini", "averages": {"sts": 0.5, "retrieval": 0.25, "all": 0.375}}
    out = export_model(folder, tmp_path / "carded", adapters=adapters, max_length=64, base_model="org/base",
                       license="mit", scores=record)
    card = (out / "README.md").read_text()
    front = card.split("---\n")[1]
    for line in ("library_name: sentence-transformers", "pipeline_tag: sentence-similarity", "base_model: org/base",
                 "license: mit", "language: [en]", "datasets: [wikipedia]", "- name: carded",
                 "metrics: [{type: main_score, value: 25.00}]"):
        assert line in front, f"{line!r} not in the card's front matter:\n{front}"
    for text in ('SentenceTransformer("carded")', "AutoModel.from_pretrained", "truncation=True",
                 "max_length=64", "Encoder.from_pretrained", "transformers older than 5.2", "## Limitations",
                 "`adapter0` (LoRA r=4, alpha=8)", "sts 50.00, retrieval 25.00", "llm2vec_config.json"):
        assert text in card, f"{text!r} not in the card"
    assert "trust_remote_code" not in card  # standard modules: nothing to trust
    assert "GGUF" not in card  # another base: no claim about SmolLM2's weights
    from l2v.formats.export import _card_limitations

    assert "dequantised from a 4-bit GGUF" in _card_limitations({"max_length": 512},
                                                                 "HuggingFaceTB/SmolLM2-135M-Instruct")[0]
    with pytest.raises(L2VError, match="not an l2v eval record"):
        (tmp_path / "bad.json").write_text("{}")
        export_model(folder, tmp_path / "bad", scores=tmp_path / "bad.json")


@pytest.mark.parametrize("device", ["mps", "xpu"])
def test_devices_l2v_never_ran_on_are_refused(device):
    from l2v.formats.loading import resolve_device

    with pytest.raises(L2VError, match=f"device '{device}': l2v runs on cpu or cuda only"):
        resolve_device(device)


def test_encode_takes_what_sentence_transformers_users_type(reference):
    """Issue 38: numpy and pandas input, truncate_dim, device, tensors on the model's device, pairwise
    similarity, get_embedding_dimension and max_seq_length, each against sentence-transformers' meaning."""
    pd = pytest.importorskip("pandas")
    full = reference.encode(TEXTS)
    np.testing.assert_array_equal(reference.encode(np.array(TEXTS)), full)
    np.testing.assert_array_equal(reference.encode(pd.Series(TEXTS)), full)
    cut = reference.encode(TEXTS, truncate_dim=16, normalize_embeddings=True)
    np.testing.assert_allclose(cut, full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(L2VError, match="truncate_dim must be an integer from 1 to 48"):
        reference.encode(TEXTS, truncate_dim=49)
    t = reference.encode(TEXTS, convert_to_tensor=True, device="cpu")
    assert isinstance(t, torch.Tensor) and t.device == reference.device  # (on a GPU machine: cuda, as the model)
    a, b = full[:4], full[4:8]
    np.testing.assert_allclose(reference.similarity_pairwise(a, b), np.diag(reference.similarity(a, b)), atol=1e-6)
    np.testing.assert_allclose(reference.similarity_pairwise(torch.as_tensor(a), b), np.diag(reference.similarity(a, b)),
                               atol=1e-6)
    assert reference.get_embedding_dimension() == 48
    reference.max_seq_length = 32
    try:
        assert reference.max_length == 32 and reference.max_seq_length == 32
    finally:
        reference.max_seq_length = 64
    with pytest.raises(L2VError, match="mps"):
        reference.encode(TEXTS, device="mps")


def test_mteb_loads_an_export_with_a_revision_from_its_content(exported, tiny_encoder_folder, adapters, tmp_path,
                                                               monkeypatch):
    """Issue 38: a ModelMeta with a loader (mteb's own load_model), a revision that changes when the export
    does (so mteb's cache never serves a stale export's scores), and encode_kwargs' batch_size honoured."""
    pytest.importorskip("mteb")
    from l2v.formats.mteb import content_revision, model_meta

    meta = model_meta(exported)
    assert meta.name == "l2v/tiny-l2v" and meta.revision == content_revision(exported) and len(meta.revision) == 12
    model = meta.load_model()
    assert model.mteb_model_meta.revision == meta.revision
    np.testing.assert_allclose(model.encoder.encode(TEXTS), l2v.Encoder.from_pretrained(exported).encode(TEXTS), atol=1e-6)
    again = export_model(tiny_encoder_folder, tmp_path / "tiny-l2v", adapters=adapters[:1], max_length=64)
    assert content_revision(again) != meta.revision, "a re-export with other adapters kept the revision"
    assert content_revision(tiny_encoder_folder, adapters) != content_revision(tiny_encoder_folder, adapters[:1])

    sizes = []
    encode = l2v.Encoder.encode
    monkeypatch.setattr(l2v.Encoder, "encode", lambda self, texts, **kw: sizes.append(kw["batch_size"]) or
                        encode(self, texts, **kw))
    rng = np.random.default_rng(0)
    rows = [{"sentence1": " ".join(rng.choice(TEXTS[:7], 2)), "sentence2": " ".join(rng.choice(TEXTS[:7], 2)),
             "score": float(rng.integers(0, 6))} for _ in range(12)]
    mteb_sts_score(model, rows, encode_kwargs={"batch_size": 3})
    assert sizes and set(sizes) == {3}, f"mteb's encode_kwargs batch_size 3 reached encode as {sizes}"


def test_encode_cli_reads_jsonl_and_csv_and_ends_in_one_line(exported, reference, tmp_path, capsys, monkeypatch):
    """Issue 38: `l2v encode` takes JSONL / CSV (--column), --prompt-name, --dtype/--autocast; Ctrl-C and
    out-of-memory end in one line with a status, not a traceback."""
    texts = TEXTS[:4]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(texts)))
    (tmp_path / "t.csv").write_text("id,body\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts)))
    want = reference.encode(texts, instruction=INSTRUCTION)
    for name in ("t.jsonl", "t.csv"):
        out = tmp_path / f"{name}.npy"
        assert cli(["encode", "--model", str(exported), "--input", str(tmp_path / name), "--column", "body",
                    "--prompt-name", "query", "--output", str(out)]) is None
        np.testing.assert_allclose(np.load(out), want, atol=1e-5)
    assert cli(["encode", "--model", str(exported), "--input", str(tmp_path / "t.csv"), "--output",
                str(tmp_path / "x.npy")]) == 2
    assert "no column 'text' (it has id, body); choose one with --column" in capsys.readouterr().err
    out = tmp_path / "bf16.npy"
    assert cli(["encode", "--model", str(exported), "--input", str(tmp_path / "t.jsonl"), "--column", "body",
                "--dtype", "bfloat16", "--autocast", "--output", str(out)]) is None
    assert min_cosine(np.load(out), reference.encode(texts)) > 0.99

    args = ["encode", "--model", str(exported), "--input", str(tmp_path / "t.jsonl"), "--column", "body",
            "--output", str(tmp_path / "never.npy")]
    hint = "try a smaller --batch-size or --max-length, or see what fits with `l2v plan`"
    for error, status, line in ((KeyboardInterrupt(), 130, "stopped by Ctrl-C; nothing was written"),
                                (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), 1, hint),
                                (RuntimeError("[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't "
                                              "allocate memory: you tried to allocate 9 bytes."), 1, hint),
                                (MemoryError(), 1, hint)):
        def fail(*a, error=error, **k):
            raise error

        monkeypatch.setattr(l2v.Encoder, "encode", fail)
        capsys.readouterr()
        assert cli(args) == status
        err = capsys.readouterr().err
        assert line in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "multi.csv").write_text('id,body\n1,"two\nlines"\n2,plain\n')
    from l2v.runtime.files import read_texts

    assert read_texts(tmp_path / "multi.csv", "body") == ["two\nlines", "plain"]  # a quoted line break is kept


def test_a_matryoshka_size_exports_as_truncate_dim(plain_base, tmp_path):
    """Issue 38: export --truncate-dim K: l2v keeps the first K dimensions, the card tells sentence-transformers
    users its truncate_dim=K (the same vectors), mteb's meta says K; requirements name transformers >= 5.2."""
    st = pytest.importorskip("sentence_transformers")
    folder, adapters = plain_base
    out = export_model(folder, tmp_path / "mrl", adapters=adapters, max_length=64, truncate_dim=16)
    enc = l2v.Encoder.from_pretrained(out)
    got = enc.encode(ST_TEXTS)
    assert got.shape == (len(ST_TEXTS), 16) and enc.get_embedding_dimension() == 16
    np.testing.assert_allclose(got, l2v.Encoder.from_pretrained(folder, adapters=adapters, max_length=64)
                               .encode(ST_TEXTS)[:, :16], atol=1e-5)
    assert "16-dimensional embeddings (the first of 48" in (out / "README.md").read_text()
    theirs = st.SentenceTransformer(str(out), device="cpu").encode(ST_TEXTS)  # truncate_dim from the folder
    assert min_cosine(theirs, got) >= 0.9999
    requirements = json.loads((out / "config_sentence_transformers.json").read_text())["requirements"]
    assert requirements["transformers"]["specifier"] == ">=5.2"
    assert theirs.shape == got.shape
    with pytest.raises(L2VError, match="truncate_dim must be an integer from 1 to 48"):
        export_model(folder, tmp_path / "bad", truncate_dim=64)
    with pytest.raises(L2VError, match="normalises before it truncates"):
        export_model(folder, tmp_path / "bad", truncate_dim=16, normalize=True)


def test_normalize_and_attention_are_said_whatever_the_modules(plain_base, tiny_encoder_folder, tmp_path):
    """--normalize reaches l2v (read back) and sentence-transformers (a Normalize module) on both module paths;
    a causal export says "is_causal": true, even when made from a bidirectional export."""
    folder, adapters = plain_base
    for source, pooling in ((folder, "mean"), (tiny_encoder_folder, "mean"), (folder, "eos")):
        out = export_model(source, tmp_path / f"n-{pooling}-{source.name}", pooling=pooling, normalize=True,
                           max_length=64)
        assert "sentence_transformers.models.Normalize" in [m["type"] for m in
                                                            json.loads((out / "modules.json").read_text())]
        np.testing.assert_allclose(np.linalg.norm(l2v.Encoder.from_pretrained(out).encode(ST_TEXTS), axis=1), 1,
                                   atol=1e-5)
    bidirectional = export_model(folder, tmp_path / "bi", max_length=64)
    causal = export_model(bidirectional, tmp_path / "causal-again", causal=True, max_length=64)
    assert json.loads((causal / "config.json").read_text())["is_causal"] is True
    assert "is_causal" not in json.loads((causal / "config_sentence_transformers.json").read_text())["requirements"]
