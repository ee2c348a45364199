"""Issue 6: the evaluator's metrics and protocols against scipy, scikit-learn, trec_eval and mteb."""

import json

import numpy as np
import pytest
from conftest import write_folder

from l2v.evaluate import Task, TaskError, evaluate, format_table
from l2v.evaluate import metrics as M
from l2v.evaluate.estimators import fit_logistic_regression, kmeans
from l2v.evaluate.tasks import undersample
from l2v.formats.mteb import L2VForMTEB, llm2vec_instruction, task_instruction

scipy_stats = pytest.importorskip("scipy.stats")
sk_metrics = pytest.importorskip("sklearn.metrics")


# ---------------------------------------------------------------- metrics


def test_spearman_pearson_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 300).astype(float)  # many ties
    b = np.round(rng.normal(size=300), 1)
    assert M.spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b)[0], abs=1e-12)
    assert M.pearson(a, b) == pytest.approx(scipy_stats.pearsonr(a, b)[0], abs=1e-12)
    assert np.array_equal(M.rankdata(a), scipy_stats.rankdata(a))


def test_average_precision_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(5):
        y = rng.integers(0, 2, 200)
        s = np.round(rng.normal(size=200), 1)  # tied scores form one threshold
        assert M.average_precision(y, s) == pytest.approx(sk_metrics.average_precision_score(y, s), abs=1e-12)


def test_v_measure():
    rng = np.random.default_rng(2)
    for _ in range(5):
        t, p = rng.integers(0, 5, 300), rng.integers(0, 7, 300)
        assert M.v_measure(t, p) == pytest.approx(sk_metrics.v_measure_score(t, p), abs=1e-12)
    assert M.v_measure([0, 0, 1, 1], [5, 5, 3, 3]) == 1.0


def random_run(rng, n_queries=20, n_docs=40):
    qrels, run = {}, {}
    for q in range(n_queries):
        docs = [f"d{j:02d}" for j in range(n_docs)]
        rel = rng.choice(docs, size=rng.integers(1, 5), replace=False)
        qrels[f"q{q}"] = {d: int(rng.integers(1, 3)) for d in rel}  # graded relevance
        run[f"q{q}"] = {d: float(np.round(rng.normal(), 1)) for d in docs}  # ties
    return qrels, run


def test_retrieval_metrics_equal_trec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, run = random_run(np.random.default_rng(3))
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map_cut.10", "map_cut.1000", "recall.10"}).evaluate(run)
    for q in qrels:
        ranking = M.trec_ranking(run[q])
        assert M.ndcg_at_k(ranking, qrels[q], 10) == pytest.approx(ref[q]["ndcg_cut_10"], abs=1e-6)
        assert M.average_precision_at_k(ranking, qrels[q], 10) == pytest.approx(ref[q]["map_cut_10"], abs=1e-6)
        assert M.average_precision_at_k(ranking, qrels[q], 1000) == pytest.approx(ref[q]["map_cut_1000"], abs=1e-6)
        assert M.recall_at_k(ranking, qrels[q], 10) == pytest.approx(ref[q]["recall_10"], abs=1e-6)


def test_trec_tie_break_example_from_mteb_notes():
    ranking = M.trec_ranking({"a": 0.5, "b": 0.5})
    assert ranking == ["b", "a"]  # equal scores: document id descending
    assert M.ndcg_at_k(ranking, {"a": 1}, 1) == 0.0
    assert M.ndcg_at_k(ranking, {"a": 1}, 10) == pytest.approx(1 / np.log2(3))


def test_mrr_equals_mteb():
    mteb_eval = pytest.importorskip("mteb._evaluators.retrieval_metrics")
    qrels, run = random_run(np.random.default_rng(4))
    ours = np.mean([M.reciprocal_rank_at_k(M.trec_ranking(run[q]), qrels[q], 10) for q in qrels])
    theirs = np.mean(mteb_eval.mrr(qrels, run, [10])["MRR@10"])
    assert ours == pytest.approx(theirs, abs=1e-5)  # mteb rounds to 5 decimals


# ---------------------------------------------------------------- the two learners


def blobs(n_per, centers, spread, seed):
    rng = np.random.default_rng(seed)
    X = np.concatenate([c + spread * rng.normal(size=(n_per, len(c))) for c in centers])
    y = np.repeat(np.arange(len(centers)), n_per)
    return X, y


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logistic_regression_close_to_sklearn(n_classes):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    centers = rng.normal(size=(n_classes, 16))
    X, y = blobs(40, centers, 1.5, seed=6)
    Xt, yt = blobs(100, centers, 1.5, seed=7)
    ours = (fit_logistic_regression(X, y)(Xt) == yt).mean()
    ref = LogisticRegression(max_iter=100, random_state=42).fit(X, y)
    theirs = (ref.predict(Xt) == yt).mean()
    assert abs(ours - theirs) <= 0.01
    assert (fit_logistic_regression(X, y)(X) == ref.predict(X)).mean() >= 0.97


def test_kmeans_close_to_sklearn():
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(8)
    X, y = blobs(60, rng.normal(size=(5, 24)) * 2.5, 1.0, seed=9)
    ours = M.v_measure(y, kmeans(X, 5))
    theirs = M.v_measure(y, MiniBatchKMeans(5, batch_size=500, n_init="auto", random_state=42).fit_predict(X))
    assert abs(ours - theirs) <= 0.01 and ours > 0.8


def test_undersampling_is_mtebs():
    labels = ["a"] * 30 + ["b"] * 20 + ["c"] * 10
    idxs = list(range(len(labels)))
    np.random.RandomState(42).shuffle(idxs)
    chosen = undersample(labels, idxs, 4)
    assert len(chosen) == 12 and all(sum(labels[i] == c for i in chosen) == 4 for c in "abc")
    assert chosen == [i for i in idxs if i in set(chosen)]  # the first ones, in shuffled order


# ---------------------------------------------------------------- task folders


def test_task_errors(tmp_path):
    with pytest.raises(TaskError, match="no task.json"):
        Task.load(tmp_path)
    f = write_folder(tmp_path, "t1", "sts", {"data.jsonl": [{"sentence1": "a", "sentence2": "b", "score": 1},
                                                            {"sentence1": "a", "score": 2}]})
    with pytest.raises(TaskError, match=r"t1/data.jsonl, line 2: missing field 'sentence2'"):
        Task.load(f)
    f = write_folder(tmp_path, "t2", "summarization", {})
    with pytest.raises(TaskError, match="unknown task type 'summarization'"):
        Task.load(f)
    f = write_folder(tmp_path, "t3", "classification", {"data.jsonl": [{"text": "x", "label": "a", "split": "test"}]})
    with pytest.raises(TaskError, match="the train split is empty"):
        Task.load(f)
    f = write_folder(tmp_path, "t4", "classification", {"data.jsonl": [
        {"text": "x", "label": "a", "split": "train"}, {"text": "y", "label": "b", "split": "test"}]})
    with pytest.raises(TaskError, match="test label\\(s\\) never seen in training: b"):
        Task.load(f)
    f = write_folder(tmp_path, "t5", "retrieval", {"corpus.jsonl": [{"id": "d1", "text": "doc"}],
                                                   "queries.jsonl": [{"id": "q1", "text": "query"}],
                                                   "qrels.tsv": "q1\td1\t1\nq1\td9\t1\n"})
    with pytest.raises(TaskError, match="qrels.tsv, line 2: corpus id 'd9' is not in corpus.jsonl"):
        Task.load(f)
    f = write_folder(tmp_path, "t6", "sts", {"data.jsonl": '{"sentence1": "a",\n'})
    with pytest.raises(TaskError, match="line 1: not valid JSON"):
        Task.load(f)


# ---------------------------------------------------------------- whole tasks against mteb


class TableEncoder:
    """An Encoder stand-in that returns precomputed vectors, so mteb and l2v score identical embeddings."""

    def __init__(self, table):
        self.table, self.dim = table, len(next(iter(table.values())))
        self.seen_instructions = set()

    def encode(self, texts, instruction=None, batch_size=32, show_progress_bar=False, **kw):
        out = []
        for t in texts:
            if isinstance(t, (list, tuple)):
                instruction, t = t
            self.seen_instructions.add(instruction or "")
            out.append(self.table[t])
        return np.array(out, dtype=np.float32)


def vectors_for(texts, dim=16, seed=0, structure=None):
    rng = np.random.default_rng(seed)
    return {t: (structure[t] if structure and t in structure else 0) + rng.normal(size=dim) for t in texts}


@pytest.fixture(scope="module")
def mteb_env(tmp_path_factory):
    import os

    os.environ.setdefault("MTEB_CACHE", str(tmp_path_factory.mktemp("mteb-cache")))
    return pytest.importorskip("mteb")


TASK_ARGS = dict(description="l2v reference check", reference="https://example.org",
                 dataset={"path": "NA", "revision": "NA"}, category="t2t", eval_splits=["test"],
                 eval_langs=["eng-Latn"], date=("2024-01-01", "2024-01-01"), dialect=["Written"], domains=[],
                 task_subtypes=[], license="cc-by-4.0", annotations_creators="derived", modalities=["text"],
                 sample_creation="found", bibtex_citation="")


def run_mteb(mteb, task_cls, kind, main, dataset, table, **extra):
    from mteb.abstasks.task_metadata import TaskMetadata

    class InMemory(task_cls):
        metadata = TaskMetadata(type=kind, name=f"L2VCheck{kind}", main_score=main, **TASK_ARGS)

        def load_data(self, **kw):
            self.dataset = dataset
            self.data_loaded = True

    for k, v in extra.items():
        setattr(InMemory, k, v)
    result = mteb.evaluate(L2VForMTEB(TableEncoder(table)), [InMemory()], cache=None)
    return result.task_results[0].scores["test"][0]


def test_sts_equals_mteb(mteb_env, tmp_path):
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS

    rng = np.random.default_rng(10)
    rows = [{"sentence1": f"s{i}", "sentence2": f"t{i}", "score": float(rng.integers(0, 6))} for i in range(80)]
    table = vectors_for([f"s{i}" for i in range(80)] + [f"t{i}" for i in range(80)])
    ref = run_mteb(mteb_env, AbsTaskSTS, "STS", "cosine_spearman",
                   DatasetDict({"test": Dataset.from_list(rows)}), table)
    ours = Task.load(write_folder(tmp_path, "sts", "sts", {"data.jsonl": rows})).evaluate(
        lambda texts, role: np.stack([table[t] for t in texts]))
    assert ours["main_score"] == pytest.approx(ref["cosine_spearman"], abs=1e-6)


def test_pair_classification_equals_mteb(mteb_env, tmp_path):
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.pair_classification import AbsTaskPairClassification

    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, 100).tolist()
    base = {f"a{i}": rng.normal(size=16) for i in range(100)}
    table = dict(base)
    table.update({f"b{i}": base[f"a{i}"] * (1.0 if labels[i] else 0.2) + rng.normal(size=16) for i in range(100)})
    rows = [{"sentence1": f"a{i}", "sentence2": f"b{i}", "label": labels[i]} for i in range(100)]
    dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": [[r["sentence1"] for r in rows]],
                                                      "sentence2": [[r["sentence2"] for r in rows]],
                                                      "labels": [labels]})})
    ref = run_mteb(mteb_env, AbsTaskPairClassification, "PairClassification", "max_ap", dataset, table)
    ours = Task.load(write_folder(tmp_path, "pc", "pair_classification", {"data.jsonl": rows})).evaluate(
        lambda texts, role: np.stack([table[t] for t in texts]))
    assert ours["main_score"] == pytest.approx(ref["max_ap"], abs=1e-6)
    assert ours["cosine_ap"] == pytest.approx(ref["cosine_ap"], abs=1e-6)
    assert ours["manhattan_ap"] == pytest.approx(ref["manhattan_ap"], abs=1e-6)


def retrieval_data(rng, n_queries=15, n_docs=60):
    """Queries near their relevant documents, with a few exact score ties through duplicate vectors."""
    docs = {f"d{j:02d}": rng.normal(size=16) for j in range(n_docs)}
    docs["d59"] = docs["d58"].copy()  # a tie, broken by document id
    queries, qrels = {}, {}
    for q in range(n_queries):
        rel = rng.choice(sorted(docs), size=int(rng.integers(1, 4)), replace=False)
        qrels[f"q{q}"] = {d: int(rng.integers(1, 3)) for d in rel}
        queries[f"q{q}"] = docs[rel[0]] + 1.5 * rng.normal(size=16)
    return docs, queries, qrels


def test_retrieval_equals_mteb(mteb_env, tmp_path):
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    docs, queries, qrels = retrieval_data(np.random.default_rng(12))
    table = {**{f"doc {d}": v for d, v in docs.items()}, **{f"query {q}": v for q, v in queries.items()}}
    corpus = [{"id": d, "title": "", "text": f"doc {d}"} for d in docs]
    qs = [{"id": q, "text": f"query {q}"} for q in queries]
    split = {"corpus": Dataset.from_list(corpus), "queries": Dataset.from_list(qs), "relevant_docs": qrels,
             "top_ranked": None}
    ref = run_mteb(mteb_env, AbsTaskRetrieval, "Retrieval", "ndcg_at_10", {"default": {"test": split}}, table)
    folder = write_folder(tmp_path, "r", "retrieval", {
        "corpus.jsonl": corpus, "queries.jsonl": qs,
        "qrels.tsv": "".join(f"{q}\t{d}\t{g}\n" for q, ds in qrels.items() for d, g in ds.items())})
    ours = Task.load(folder).evaluate(lambda texts, role: np.stack([table[t] for t in texts]))
    for key in ("ndcg_at_10", "map_at_10", "recall_at_10", "mrr_at_10", "ndcg_at_1"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-5), key  # mteb rounds to 5 decimals


def test_reranking_equals_mteb(mteb_env, tmp_path):
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    rng = np.random.default_rng(13)
    rows, table, corpus, qs, qrels, top = [], {}, [], [], {}, {}
    for i in range(20):
        q = rng.normal(size=16)
        n_pos, n_neg = int(rng.integers(1, 3)), int(rng.integers(2, 6))
        pos = [q + 1.2 * rng.normal(size=16) for _ in range(n_pos)]
        neg = [rng.normal(size=16) for _ in range(n_neg)]
        texts = [f"cand {i}-{j}" for j in range(n_pos + n_neg)]
        table.update(zip(texts, pos + neg))
        table[f"q {i}"] = q
        rows.append({"query": f"q {i}", "positive": texts[:n_pos], "negative": texts[n_pos:]})
        qs.append({"id": str(i), "text": f"q {i}"})
        corpus += [{"id": f"{i}-{j}", "title": "", "text": t} for j, t in enumerate(texts)]
        qrels[str(i)] = {f"{i}-{j}": int(j < n_pos) for j in range(len(texts))}
        top[str(i)] = [f"{i}-{j}" for j in range(len(texts))]
    split = {"corpus": Dataset.from_list(corpus), "queries": Dataset.from_list(qs), "relevant_docs": qrels,
             "top_ranked": top}
    ref = run_mteb(mteb_env, AbsTaskRetrieval, "Reranking", "map_at_1000", {"default": {"test": split}}, table)
    ours = Task.load(write_folder(tmp_path, "rr", "reranking", {"data.jsonl": rows})).evaluate(
        lambda texts, role: np.stack([table[t] for t in texts]))
    assert ours["map"] == pytest.approx(ref["map_at_1000"], abs=1e-5)
    assert ours["mrr_at_10"] == pytest.approx(ref["mrr_at_10"], abs=1e-5)


def test_classification_close_to_mteb(mteb_env, tmp_path):
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.classification import AbsTaskClassification

    rng = np.random.default_rng(14)
    centers = rng.normal(size=(3, 16))
    rows, table = [], {}
    for split, n in (("train", 60), ("test", 90)):
        for i in range(n):
            label = i % 3
            text = f"{split} {i}"
            table[text] = centers[label] + 1.3 * rng.normal(size=16)
            rows.append({"text": text, "label": label, "split": split})
    dataset = DatasetDict({s: Dataset.from_list([{"text": r["text"], "label": r["label"]} for r in rows
                                                 if r["split"] == s]) for s in ("train", "test")})
    ref = run_mteb(mteb_env, AbsTaskClassification, "Classification", "accuracy", dataset, table)
    ours = Task.load(write_folder(tmp_path, "c", "classification", {"data.jsonl": rows})).evaluate(
        lambda texts, role: np.stack([table[t] for t in texts]))
    assert abs(ours["accuracy"] - ref["accuracy"]) <= 0.01
    assert abs(ours["f1"] - ref["f1"]) <= 0.01


def test_clustering_close_to_mteb(mteb_env, tmp_path):
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.clustering_legacy import AbsTaskClusteringLegacy

    rng = np.random.default_rng(15)
    X, y = blobs(40, rng.normal(size=(4, 16)) * 2.0, 1.0, seed=16)
    table = {f"x{i}": v for i, v in enumerate(X)}
    rows = [{"text": f"x{i}", "label": int(label)} for i, label in enumerate(y)]
    dataset = DatasetDict({"test": Dataset.from_dict({"sentences": [[r["text"] for r in rows]],
                                                      "labels": [[r["label"] for r in rows]]})})
    ref = run_mteb(mteb_env, AbsTaskClusteringLegacy, "Clustering", "v_measure", dataset, table)
    ours = Task.load(write_folder(tmp_path, "k", "clustering", {"data.jsonl": rows})).evaluate(
        lambda texts, role: np.stack([table[t] for t in texts]))
    assert abs(ours["v_measure"] - ref["v_measure"]) <= 0.01


# ---------------------------------------------------------------- the mteb adapter and the runner


def test_mteb_adapter_protocol_and_instructions(mteb_env):
    from mteb.models.models_protocols import EncoderProtocol
    from mteb.types import PromptType

    model = L2VForMTEB(TableEncoder({"x": np.ones(4)}))
    assert isinstance(model, EncoderProtocol)
    assert model.mteb_model_meta.similarity_fn_name.value == "cosine"
    assert llm2vec_instruction("Retrieve relevant passages.") == "Retrieve relevant passages:"

    class Meta:
        prompt = {"query": "Given a question, retrieve answers."}

    assert task_instruction(Meta, PromptType.query) == "Given a question, retrieve answers:"
    assert task_instruction(Meta, PromptType.document) == ""


def test_runner_uses_instructions_and_formats_a_table(tmp_path):
    rows = [{"sentence1": f"s{i}", "sentence2": f"t{i}", "score": i % 4} for i in range(12)]
    folder = write_folder(tmp_path, "sts", "sts", {"data.jsonl": rows}, instruction="Retrieve similar text")
    enc = TableEncoder(vectors_for([f"s{i}" for i in range(12)] + [f"t{i}" for i in range(12)]))
    results = evaluate(enc, [folder], show_progress=False)
    assert enc.seen_instructions == {"Retrieve similar text"}
    assert results[0]["task"] == "sts" and -1 <= results[0]["main_score"] <= 1
    table = format_table(results)
    assert "average sts" in table and "average all" in table


# ---------------------------------------------------------------- the built-in suite (when fetched)

from l2v.sources.suites import suite_folder  # noqa: E402


@pytest.mark.skipif(not (suite_folder("l2v-mini-quick") / "DONE").is_file(), reason="run `l2v fetch l2v-mini` first")
@pytest.mark.parametrize("suite", ["l2v-mini-quick", "l2v-mini"], ids=["quick", "full"])
def test_suite_tasks_load_with_provenance(suite):
    from l2v.evaluate.tasks import MAIN_SCORES
    from l2v.sources.suites import build_suite

    tasks = [Task.load(f) for f in build_suite(suite)]
    assert len(tasks) == 11 and {t.type for t in tasks} == set(MAIN_SCORES)
    for t in tasks:
        assert {"source", "license", "citation"} <= set(t.meta), t.name
    lee = next(t for t in tasks if t.name == "lee-news-sts")
    assert len(lee.rows) == 1225 and len({r["sentence1"] for r in lee.rows}) == 49


def test_suites_by_name_keep_their_cache_folders(tmp_path, monkeypatch):
    """A renamed folder would rebuild every cached suite: the names are pinned (update them with a VERSION)."""
    from l2v.runtime.checks import L2VError
    from l2v.sources.suites import SUITES

    monkeypatch.setenv("L2V_CACHE", str(tmp_path))
    assert {name: suite_folder(name).relative_to(tmp_path).as_posix() for name in SUITES} == {
        "l2v-mini": "suites/l2v-mini-v2", "l2v-mini-quick": "suites/l2v-mini-quick-v2",
        "l2v-mini-smoke": "suites/l2v-mini-smoke-v2", "l2v-dev": "suites/l2v-dev-v3"}
    assert suite_folder() == suite_folder("l2v-mini")
    with pytest.raises(L2VError, match=r"^unknown suite 'l2v-mini-full'; known: l2v-mini, l2v-mini-quick, l2v-mini-smoke, l2v-dev$"):
        suite_folder("l2v-mini-full")


@pytest.mark.skipif(not (suite_folder("l2v-mini-quick") / "DONE").is_file(), reason="run `l2v fetch l2v-mini` first")
def test_cli_eval_on_the_real_model(tmp_path, capsys):
    from conftest import SMOLLM2_FOLDER as FOLDER

    if not FOLDER.is_dir():
        pytest.skip("run `l2v fetch smollm2` first")
    from l2v.tools.cli import main as cli

    task = suite_folder("l2v-mini-quick") / "wordsim353-sts"
    cli(["eval", "--model", str(FOLDER), "--causal", "--task", str(task), "--json", str(tmp_path / "r.json")])
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["causal"] is True and record["pooling"] == "mean" and "torch" in record["versions"]
    assert record["tasks"][0]["task"] == "wordsim353-sts" and 0.0 < record["tasks"][0]["main_score"] < 1.0
    assert "average sts" in capsys.readouterr().out


# ---------------------------------------------------------------- bootstrap intervals


def test_bootstrap_resamples_rescored_as_scipy_and_sklearn(tmp_path):
    """Each bootstrap value is the main score on one resample of the items, recomputed here with
    scipy / scikit-learn on the same indices (numpy's default_rng(0), as documented)."""
    from l2v.evaluate.tasks import BOOTSTRAP

    rng = np.random.default_rng(3)
    rows = [{"sentence1": f"s{i}", "sentence2": f"t{i}", "score": float(rng.integers(0, 6))} for i in range(60)]
    pairs = [{"sentence1": f"s{i}", "sentence2": f"t{i}", "label": int(i % 3 == 0)} for i in range(60)]
    structure = {f"t{i}": 1.5 * (rows[i]["score"] - 2.5) * np.ones(16) for i in range(60)}
    table = vectors_for([f"s{i}" for i in range(60)] + [f"t{i}" for i in range(60)], structure=structure)
    table.update({f"s{i}": np.ones(16) + 0.3 * rng.normal(size=16) for i in range(60)})
    embed = lambda texts, role: np.stack([table[t] for t in texts])  # noqa: E731
    sts = Task.load(write_folder(tmp_path, "sts", "sts", {"data.jsonl": rows})).evaluate(embed)
    pair = Task.load(write_folder(tmp_path, "pair", "pair_classification", {"data.jsonl": pairs})).evaluate(embed)
    assert len(sts["bootstrap"]) == len(pair["bootstrap"]) == BOOTSTRAP
    e1, e2 = np.stack([table[f"s{i}"] for i in range(60)]), np.stack([table[f"t{i}"] for i in range(60)])
    cos = (e1 * e2).sum(1) / np.linalg.norm(e1, axis=1) / np.linalg.norm(e2, axis=1)
    gold, labels = np.array([r["score"] for r in rows]), np.array([r["label"] for r in pairs])
    sims = [cos, (e1 * e2).sum(1), -np.linalg.norm(e1 - e2, axis=1), -np.abs(e1 - e2).sum(1)]
    draw = np.random.default_rng(0)
    for b in range(5):
        idx = draw.integers(0, 60, 60)
        assert sts["bootstrap"][b] == pytest.approx(scipy_stats.spearmanr(gold[idx], cos[idx])[0], abs=1e-5)
    draw = np.random.default_rng(0)
    for b in range(5):
        idx = draw.integers(0, 60, 60)
        want = max(sk_metrics.average_precision_score(labels[idx], s[idx]) for s in sims)
        assert pair["bootstrap"][b] == pytest.approx(want, abs=1e-5)
    # the resamples spread around the score itself
    assert min(sts["bootstrap"]) < sts["main_score"] < max(sts["bootstrap"])


def test_compare_sees_a_real_difference_and_not_an_identical_copy(tmp_path):
    from l2v.evaluate import compare

    rng = np.random.default_rng(4)
    rows = [{"sentence1": f"s{i}", "sentence2": f"t{i}", "score": float(rng.integers(0, 6))} for i in range(200)]
    folder = write_folder(tmp_path, "sts", "sts", {"data.jsonl": rows})
    texts = [f"s{i}" for i in range(200)] + [f"t{i}" for i in range(200)]
    good = vectors_for(texts, structure={f"t{i}": (rows[i]["score"] - 2.5) * np.ones(16) for i in range(200)})
    good.update({f"s{i}": np.ones(16) for i in range(200)})
    noise = vectors_for(texts, seed=1)
    better, worse = evaluate(TableEncoder(good), [folder], show_progress=False), \
        evaluate(TableEncoder(noise), [folder], show_progress=False)
    diff = compare(better, worse)
    assert diff["sts"]["low"] > 0 and diff["sts"]["diff"] == pytest.approx(
        100 * (better[0]["main_score"] - worse[0]["main_score"]), abs=0.01)
    same = compare(worse, worse)
    assert same["all"] == {"diff": 0.0, "low": 0.0, "high": 0.0}
    with pytest.raises(ValueError, match="not in both"):
        compare(better, [])
