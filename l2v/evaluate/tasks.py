"""Task folders and how each task type is scored — MTEB's protocols, on data a user can write.

A task folder holds `task.json` — {"name", "type", "main_score", optional "instruction",
"source", "license", "citation"} — and its data:

    sts                  data.jsonl     {"sentence1", "sentence2", "score"}
    classification       data.jsonl     {"text", "label", "split": "train" | "test"}
    clustering           data.jsonl     {"text", "label"}
    pair_classification  data.jsonl     {"sentence1", "sentence2", "label": 0 | 1}
    retrieval            corpus.jsonl   {"id", "title", "text"};  queries.jsonl {"id", "text"};
                         qrels.tsv      query id <tab> corpus id <tab> relevance
    reranking            data.jsonl     {"query", "positive": [...], "negative": [...]}

Scoring uses an `embed(texts, role)` function (role "query" or "document") so that embeddings
can come from an Encoder or, in the reference checks, from a table of precomputed vectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..runtime.checks import L2VError
from ..runtime.files import read_json, read_jsonl, read_lines
from . import metrics as M
from .estimators import fit_logistic_regression, kmeans

MAIN_SCORES = {
    "sts": "cosine_spearman",
    "classification": "accuracy",
    "clustering": "v_measure",
    "pair_classification": "max_ap",
    "retrieval": "ndcg_at_10",
    "reranking": "map",
}
FIELDS = {
    "sts": {"sentence1": str, "sentence2": str, "score": (int, float)},
    "classification": {"text": str, "label": (str, int), "split": str},
    "clustering": {"text": str, "label": (str, int)},
    "pair_classification": {"sentence1": str, "sentence2": str, "label": int},
    "reranking": {"query": str, "positive": list, "negative": list},
}
_KS = (1, 3, 5, 10, 100, 1000)
SCORE_NAMES = {  # every score each type reports; main_score must be one of them
    "sts": ("cosine_spearman", "cosine_pearson"),
    "classification": ("accuracy", "f1"),
    "clustering": ("v_measure",),
    "pair_classification": ("max_ap", "cosine_ap", "dot_ap", "euclidean_ap", "manhattan_ap"),
    "retrieval": tuple(f"{m}_at_{k}" for k in _KS for m in ("ndcg", "map", "recall")) + ("mrr_at_10",),
    "reranking": ("map", "mrr_at_10"),
}
Embed = Callable[[list[str], str], np.ndarray]  # (texts, "query" | "document") → (N, D)
BOOTSTRAP = 200  # resamples of each task's items behind its confidence interval (see `bootstrap`)


class TaskError(L2VError):
    """A task folder that cannot be evaluated; the message names the file and, if any, the line."""


@dataclass
class Task:
    name: str
    type: str
    main_score: str
    folder: Path
    instruction: str = ""
    meta: dict = field(default_factory=dict)  # source, license, citation, ...
    rows: list = field(default_factory=list, repr=False)  # data.jsonl rows
    corpus: dict = field(default_factory=dict, repr=False)  # retrieval: id → text
    queries: dict = field(default_factory=dict, repr=False)  # retrieval: id → text
    qrels: dict = field(default_factory=dict, repr=False)  # retrieval: query id → {doc id: relevance}
    lines: list = field(default_factory=list, repr=False)  # data.jsonl: the line number of each row

    @classmethod
    def load(cls, folder) -> "Task":
        folder = Path(folder)
        spec_file = folder / "task.json"
        if not spec_file.is_file():
            raise TaskError(f"no task.json in {folder}")
        try:
            spec = read_json(spec_file, "task.json")
        except L2VError as e:
            raise TaskError(str(e)) from None
        if not isinstance(spec, dict):
            raise TaskError(f"{spec_file}: expected a JSON object")
        for key in ("name", "type"):
            if key not in spec:
                raise TaskError(f"{spec_file}: missing field '{key}'")
        kind = spec["type"]
        if kind not in MAIN_SCORES:
            raise TaskError(f"{spec_file}: unknown task type {kind!r}; known: {', '.join(MAIN_SCORES)}")
        main = spec.get("main_score", MAIN_SCORES[kind])
        if main not in SCORE_NAMES[kind]:
            raise TaskError(f"{spec_file}: unknown main_score {main!r} for {kind}; "
                            f"known: {', '.join(SCORE_NAMES[kind])}")
        for key in ("name", "instruction"):
            if not isinstance(spec.get(key, ""), str):
                raise TaskError(f"{spec_file}: field '{key}' must be a string, got {type(spec[key]).__name__}")
        task = cls(name=spec["name"], type=kind, main_score=spec.get("main_score", MAIN_SCORES[kind]), folder=folder,
                   instruction=spec.get("instruction", ""),
                   meta={k: v for k, v in spec.items() if k not in ("name", "type", "main_score", "instruction")})
        if kind == "retrieval":
            task._load_retrieval()
        else:
            task.rows = _read_jsonl(folder / "data.jsonl", FIELDS[kind], task.lines)
        task._validate()
        return task

    def _load_retrieval(self):
        self.corpus = {str(k): (r.get("title", "") + " " + r["text"]).strip()
                       for k, r in _by_id(self.folder / "corpus.jsonl").items()}
        self.queries = {str(k): r["text"] for k, r in _by_id(self.folder / "queries.jsonl").items()}
        path = self.folder / "qrels.tsv"
        if not path.is_file():
            raise TaskError(f"missing file {path}")
        for n, line in enumerate(read_lines(path), 1):
            parts = line.split("\t")
            if not line.strip() or (n == 1 and parts[-1].strip().lower() in ("score", "relevance")):
                continue  # blank line or a header
            if len(parts) != 3 or not parts[2].strip().lstrip("-").isdigit():
                raise TaskError(f"{path}, line {n}: expected 'query id<TAB>corpus id<TAB>integer relevance'")
            q, d, rel = parts[0].strip(), parts[1].strip(), int(parts[2])
            if d not in self.corpus:
                raise TaskError(f"{path}, line {n}: corpus id {d!r} is not in corpus.jsonl")
            if q not in self.queries:  # it would score nan, and so would the average
                raise TaskError(f"{path}, line {n}: query id {q!r} is not in queries.jsonl")
            self.qrels.setdefault(q, {})[d] = rel

    def _validate(self):
        """Refuse data that cannot give a meaningful score (it would read as 100, or as nan)."""
        where = self.folder / "data.jsonl"
        at = lambda i: f"{where}, line {self.lines[i]}"  # noqa: E731
        if self.type == "classification":
            for i, r in enumerate(self.rows):
                if r["split"] not in ("train", "test"):
                    raise TaskError(f"{at(i)}: split must be 'train' or 'test', got {r['split']!r}")
            splits = {s: [r for r in self.rows if r["split"] == s] for s in ("train", "test")}
            for s, rows in splits.items():
                if not rows:
                    raise TaskError(f"{where}: the {s} split is empty")
            if len({str(r["label"]) for r in self.rows}) < 2:
                raise TaskError(f"{where}: one label only; classification needs at least 2")
            unseen = sorted({str(r["label"]) for r in splits["test"]} - {str(r["label"]) for r in splits["train"]})
            if unseen:
                raise TaskError(f"{where}: test label(s) never seen in training: {', '.join(unseen)}")
        elif self.type == "retrieval":
            if not self.queries or not self.corpus:
                raise TaskError(f"{self.folder}: empty {'queries' if not self.queries else 'corpus'}")
            if not any(g > 0 for rels in self.qrels.values() for g in rels.values()):
                raise TaskError(f"{self.folder / 'qrels.tsv'}: no relevant (relevance > 0) document for any query")
        elif not self.rows:
            raise TaskError(f"{where}: no rows")
        elif self.type == "sts":
            for i, r in enumerate(self.rows):
                if not math.isfinite(r["score"]):
                    raise TaskError(f"{at(i)}: score is {r['score']}")
            if len({r["score"] for r in self.rows}) < 2:
                raise TaskError(f"{where}: every gold score is {self.rows[0]['score']}; a correlation needs variation")
        elif self.type == "clustering" and len({str(r["label"]) for r in self.rows}) < 2:
            raise TaskError(f"{where}: one label only; clustering needs at least 2")
        elif self.type == "pair_classification":
            for i, r in enumerate(self.rows):
                if r["label"] not in (0, 1):
                    raise TaskError(f"{at(i)}: label must be 0 or 1, got {r['label']!r}")
            if len({r["label"] for r in self.rows}) < 2:
                raise TaskError(f"{where}: every label is {self.rows[0]['label']}; "
                                f"average precision needs both 0 and 1")
        elif self.type == "reranking":
            for i, r in enumerate(self.rows):
                for key in ("positive", "negative"):
                    if not r[key] or not all(isinstance(t, str) for t in r[key]):
                        raise TaskError(f"{at(i)}: '{key}' must be a non-empty list of strings")

    def texts(self) -> list[tuple[str, str]]:
        """Every (text, role) this task will embed — for caching across tasks."""
        t = self.type
        if t in ("sts", "pair_classification"):
            return [(r[k], "query") for r in self.rows for k in ("sentence1", "sentence2")]
        if t in ("classification", "clustering"):
            return [(r["text"], "query") for r in self.rows]
        if t == "retrieval":
            return [(q, "query") for q in self.queries.values()] + [(d, "document") for d in self.corpus.values()]
        return [(r["query"], "query") for r in self.rows] + \
            [(d, "document") for r in self.rows for d in r["positive"] + r["negative"]]

    def evaluate(self, embed: Embed) -> dict:
        scores = {
            "sts": _sts, "classification": _classification, "clustering": _clustering,
            "pair_classification": _pair_classification, "retrieval": _retrieval, "reranking": _reranking,
        }[self.type](self, embed)
        rescore = scores.pop("rescore")  # items → the main score on those items (for the bootstrap)
        return {"main_score": scores[self.main_score], **scores,
                "bootstrap": bootstrap(rescore(self.main_score), scores["n_items"])}


def bootstrap(score_of: Callable[[np.ndarray], float], n_items: int, seed: int = 0) -> list[float]:
    """The main score on BOOTSTRAP resamples (with replacement) of a task's items: pairs, test
    texts, clustered texts or queries. The resamples depend only on the item count and the seed,
    so every model scored on a task sees the same ones, and the difference of two models'
    lists is a paired bootstrap of their difference (`l2v.evaluate.compare`)."""
    rng = np.random.default_rng(seed)
    return [round(float(score_of(rng.integers(0, n_items, n_items))), 6) for _ in range(BOOTSTRAP)]


def _read_jsonl(path: Path, fields: dict, lines: list | None = None) -> list[dict]:
    if not path.is_file():
        raise TaskError(f"missing file {path}")
    return read_jsonl(path, fields, error=TaskError, lines=lines)


def _by_id(path: Path) -> dict:
    """Rows of corpus.jsonl / queries.jsonl by id; a repeated id is an error, not a silent overwrite."""
    lines = []
    rows = _read_jsonl(path, {"id": (str, int), "text": str}, lines)
    out, first = {}, {}
    for n, r in zip(lines, rows):
        key = str(r["id"])
        if key in out:
            raise TaskError(f"{path}, line {n}: id {key!r} repeats line {first[key]}")
        out[key], first[key] = r, n
    return out


# ---------------------------------------------------------------- one scorer per task type


def _sts(task: Task, embed: Embed) -> dict:
    e1 = embed([r["sentence1"] for r in task.rows], "query")
    e2 = embed([r["sentence2"] for r in task.rows], "query")
    gold = np.array([r["score"] for r in task.rows], np.float64)
    cos = M.paired_cosine(e1, e2)
    metric = {"cosine_spearman": M.spearman, "cosine_pearson": M.pearson}
    return {"cosine_spearman": M.spearman(gold, cos), "cosine_pearson": M.pearson(gold, cos), "n_items": len(gold),
            "rescore": lambda main: lambda idx: metric[main](gold[idx], cos[idx])}


def undersample(labels: list, idxs: list[int], samples_per_label: int) -> list[int]:
    """The first `samples_per_label` indices of each label, in `idxs` order (MTEB's undersampling)."""
    taken, counts = [], {}
    for i in idxs:
        if counts.get(labels[i], 0) < samples_per_label:
            counts[labels[i]] = counts.get(labels[i], 0) + 1
            taken.append(i)
    return taken


def _classification(task: Task, embed: Embed, n_experiments: int = 10) -> dict:
    train = [r for r in task.rows if r["split"] == "train"]
    test = [r for r in task.rows if r["split"] == "test"]
    X_train, X_test = embed([r["text"] for r in train], "query"), embed([r["text"] for r in test], "query")
    y_train, y_test = [str(r["label"]) for r in train], np.array([str(r["label"]) for r in test])
    samples_per_label = int(task.meta.get("samples_per_label", 8))
    idxs = list(range(len(train)))  # kept across experiments: each shuffles the previous order
    accuracy, f1, predictions = [], [], []
    for _ in range(n_experiments):
        np.random.RandomState(42).shuffle(idxs)  # a fresh RandomState(42) each time, as MTEB does
        chosen = undersample(y_train, idxs, samples_per_label)
        predict = fit_logistic_regression(X_train[chosen], [y_train[i] for i in chosen])
        pred = predict(X_test)
        predictions.append(pred)
        accuracy.append(float((pred == y_test).mean()))
        f1.append(macro_f1(y_test, pred))
    metric = {"accuracy": lambda y, p: float((p == y).mean()), "f1": macro_f1}
    return {"accuracy": float(np.mean(accuracy)), "f1": float(np.mean(f1)), "n_items": len(y_test),
            "rescore": lambda main: lambda idx: np.mean([metric[main](y_test[idx], p[idx]) for p in predictions])}


def macro_f1(y_true, y_pred) -> float:
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_pred == c) & (y_true == c))
        precision = tp / max(np.sum(y_pred == c), 1)
        recall = tp / max(np.sum(y_true == c), 1)
        scores.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores))


def _clustering(task: Task, embed: Embed) -> dict:
    X = embed([r["text"] for r in task.rows], "query")
    labels = [str(r["label"]) for r in task.rows]
    pred = kmeans(X, k=len(set(labels)), seed=42)
    labels, pred = np.array(labels), np.asarray(pred)
    return {"v_measure": M.v_measure(labels, pred), "n_items": len(labels),
            "rescore": lambda main: lambda idx: M.v_measure(labels[idx], pred[idx])}


def _pair_classification(task: Task, embed: Embed) -> dict:
    e1 = np.asarray(embed([r["sentence1"] for r in task.rows], "query"), np.float64)
    e2 = np.asarray(embed([r["sentence2"] for r in task.rows], "query"), np.float64)
    labels = np.array([r["label"] for r in task.rows])
    scores = {  # similarities as they are, distances negated: higher always means "more alike"
        "cosine_ap": M.paired_cosine(e1, e2),
        "dot_ap": (e1 * e2).sum(-1),
        "euclidean_ap": -np.linalg.norm(e1 - e2, axis=-1),
        "manhattan_ap": -np.abs(e1 - e2).sum(-1),
    }
    out = {name: M.average_precision(labels, s) for name, s in scores.items()}

    def rescore(main):
        if main == "max_ap":
            return lambda idx: max(M.average_precision(labels[idx], s[idx]) for s in scores.values())
        return lambda idx: M.average_precision(labels[idx], scores[main][idx])

    return {"max_ap": max(out.values()), **out, "n_items": len(labels), "rescore": rescore}


def rank_scores(query_ids, doc_ids, q_emb, d_emb) -> dict[str, dict[str, float]]:
    sims = M.unit(q_emb) @ M.unit(d_emb).T  # (Q, N) cosine
    return {q: dict(zip(doc_ids, row.tolist())) for q, row in zip(query_ids, sims)}


def _ranking_metrics(runs: dict, qrels: dict, ks=_KS) -> dict:
    """Averages over queries that have a relevant document (MTEB drops the others)."""
    judged = [q for q in runs if any(g > 0 for g in qrels.get(q, {}).values())]
    rankings = {q: M.trec_ranking(runs[q]) for q in judged}
    per_query = {}  # metric → its value for each judged query
    for k in ks:
        per_query[f"ndcg_at_{k}"] = np.array([M.ndcg_at_k(rankings[q], qrels[q], k) for q in judged])
        per_query[f"map_at_{k}"] = np.array([M.average_precision_at_k(rankings[q], qrels[q], k) for q in judged])
        per_query[f"recall_at_{k}"] = np.array([M.recall_at_k(rankings[q], qrels[q], k) for q in judged])
    per_query["mrr_at_10"] = np.array([M.reciprocal_rank_at_k(rankings[q], qrels[q], 10) for q in judged])
    out = {name: float(values.mean()) for name, values in per_query.items()}
    return {**out, "n_items": len(judged), "rescore": lambda main: lambda idx: per_query[main][idx].mean()}


def _retrieval(task: Task, embed: Embed) -> dict:
    q_ids, d_ids = list(task.queries), list(task.corpus)
    q_emb = embed([task.queries[q] for q in q_ids], "query")
    d_emb = embed([task.corpus[d] for d in d_ids], "document")
    return _ranking_metrics(rank_scores(q_ids, d_ids, q_emb, d_emb), task.qrels)


def _reranking(task: Task, embed: Embed) -> dict:
    """Each query ranks only its own candidates; MAP over the full candidate list, and MRR@10."""
    q_emb = embed([r["query"] for r in task.rows], "query")
    runs, qrels = {}, {}
    for i, (row, q) in enumerate(zip(task.rows, q_emb)):
        docs = row["positive"] + row["negative"]
        ids = [f"{i}-{j}" for j in range(len(docs))]
        runs[str(i)] = rank_scores([str(i)], ids, q[None], embed(docs, "document"))[str(i)]
        qrels[str(i)] = {ids[j]: int(j < len(row["positive"])) for j in range(len(docs))}
    scores = _ranking_metrics(runs, qrels, ks=(1000,))
    names = {"map": "map_at_1000", "mrr_at_10": "mrr_at_10"}
    return {"map": scores["map_at_1000"], "mrr_at_10": scores["mrr_at_10"], "n_items": scores["n_items"],
            "rescore": lambda main: scores["rescore"](names[main])}
