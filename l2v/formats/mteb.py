"""Run real MTEB (2.x) on an l2v Encoder — for users with internet and `pip install mteb`.

    import mteb
    from l2v.formats.mteb import L2VForMTEB

    model = L2VForMTEB.from_pretrained("runs/export")        # an `l2v export` folder (or any model folder)
    mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark"]), encode_kwargs={"batch_size": 16})

    meta = model_meta("runs/export")                         # or through mteb's own loading: a ModelMeta
    mteb.evaluate(meta.load_model(), tasks)                  # whose loader reads the folder

The revision is a hash of the folder's content (weights, config, l2v settings) and of any adapters,
so results mteb caches under a name are never served for a re-export that changed.

Instructions follow the official llm2vec's evaluation: its table of retrieval instructions by task
name, else the task's own prompt, else one instruction per task type in the style of the paper's
table; a trailing "." becomes ":". They go before queries and symmetric texts as `[instruction,
text]` pairs (attended to, not pooled); documents carry none. `model_prompts` (by task name or type)
overrides all of them. The `ModelMeta` is filled from the model itself. mteb is imported only when
this wrapper is used; the rest of l2v never needs it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..encoder import Encoder

# The official llm2vec's instructions for MTEB retrieval tasks (its test_configs/mteb/task_to_instructions.json).
TASK_INSTRUCTIONS = {
    "ArguAna": "Given a claim, find documents that refute the claim:",
    "ClimateFEVER": "Given a claim about climate change, retrieve documents that support or refute the claim:",
    "DBPedia": "Given a query, retrieve relevant entity descriptions from DBPedia:",
    "FEVER": "Given a claim, retrieve documents that support or refute the claim:",
    "FiQA2018": "Given a financial question, retrieve user replies that best answer the question:",
    "HotpotQA": "Given a multi-hop question, retrieve documents that can help answer the question:",
    "MSMARCO": "Given a web search query, retrieve relevant passages that answer the query:",
    "NFCorpus": "Given a question, retrieve relevant documents that best answer the question:",
    "NQ": "Given a question, retrieve Wikipedia passages that answer the question:",
    "QuoraRetrieval": "Given a question, retrieve questions that are semantically equivalent to the given question:",
    "SCIDOCS": "Given a scientific paper title, retrieve paper abstracts that are cited by the given paper:",
    "SciFact": "Given a scientific claim, retrieve documents that support or refute the claim:",
    "STS16": "Retrieve semantically similar text:",
    "TRECCOVID": "Given a query on COVID-19, retrieve documents that answer the query:",
    "Touche2020": "Given a question, retrieve detailed and persuasive arguments that answer the question:",
}
CQADUPSTACK = "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question:"

# One instruction per task type, for tasks neither table nor task names (the paper's table words them per task).
TYPE_INSTRUCTIONS = {
    "STS": "Retrieve semantically similar text:",
    "Summarization": "Given a news summary, retrieve other semantically similar summaries:",
    "PairClassification": "Retrieve text that is semantically similar to the given text:",
    "Classification": "Classify the given text by its topic, sentiment or intent:",
    "MultilabelClassification": "Classify the given text by its topics:",
    "Clustering": "Identify the topic or theme of the given text:",
    "Retrieval": "Given a query, retrieve relevant passages that answer the query:",
    "Reranking": "Given a query, retrieve relevant documents that answer the query:",
    "BitextMining": "Retrieve parallel sentences:",
}


def llm2vec_instruction(prompt: str | None) -> str:
    """"Given a claim, find documents that refute the claim." → "Given a claim, find documents that refute the claim:"."""
    if not prompt:
        return ""
    return prompt if prompt.endswith(":") else prompt.strip(".") + ":"


def task_instruction(task_metadata, prompt_type=None, model_prompts: dict | None = None) -> str:
    """The instruction for one side of a task: "" for documents, else (first found) model_prompts by
    task name or type, the official table, the task's own prompt, the task type's instruction."""
    role = getattr(prompt_type, "value", prompt_type)
    if role == "document":
        return ""  # LLM2Vec encodes documents without an instruction
    name, kind = getattr(task_metadata, "name", None), getattr(task_metadata, "type", None)
    prompt = getattr(task_metadata, "prompt", None)
    if isinstance(prompt, dict):
        prompt = prompt.get(role or "query")
    official = TASK_INSTRUCTIONS.get(name) or (CQADUPSTACK if str(name).startswith("CQADupstack") else None)
    for choice in ((model_prompts or {}).get(name), (model_prompts or {}).get(kind), official, prompt,
                   TYPE_INSTRUCTIONS.get(kind)):
        if choice:
            return llm2vec_instruction(choice)
    return ""


def content_revision(folder, adapters=(), settings: dict | None = None) -> str:
    """12 hex digits of sha256 over what decides the embeddings: the weights, config.json and
    l2v_encoder.json of `folder`, each adapter's weights in order, and `settings` (what the caller
    overrode: attention, pooling, length, dtype, prompts). Reads every weight file once: seconds for
    a 135M model, about a minute for 7B."""
    import hashlib
    import json
    from pathlib import Path

    said = {k: v for k, v in (settings or {}).items() if v is not None}  # left out = the folder's own
    h = hashlib.sha256(json.dumps(said, sort_keys=True, default=str).encode())
    for root, names in [(Path(folder), ("config.json", "l2v_encoder.json"))] + \
            [(Path(a), ("adapter_config.json",)) for a in adapters]:
        for f in sorted(root.glob("*.safetensors")) + [root / n for n in names if (root / n).is_file()]:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 24), b""):
                    h.update(chunk)
    return h.hexdigest()[:12]


def model_meta(folder, *, adapters=(), name: str | None = None, **kwargs):
    """A mteb ModelMeta whose loader reads `folder` (an `l2v export`, or a model folder with adapters):
    `model_meta(folder).load_model()` is mteb's own way to load it; kwargs go to L2VForMTEB."""
    from pathlib import Path

    model = L2VForMTEB.from_pretrained(folder, adapters=adapters, name=name, **kwargs)
    meta = model.mteb_model_meta
    return meta.model_copy(update=dict(loader=_load, loader_kwargs=dict(path=str(Path(folder).resolve()),
                                                                         adapters=[str(a) for a in adapters],
                                                                         **kwargs)))


def _load(name, revision=None, *, path, adapters=(), **kwargs) -> "L2VForMTEB":
    model = L2VForMTEB.from_pretrained(path, adapters=adapters, name=name, **kwargs)
    if revision is not None and revision != model.revision:
        raise ValueError(f"{path} has changed since its ModelMeta was made (revision {model.revision}, "
                         f"expected {revision}): make the ModelMeta again")
    return model


class L2VForMTEB:
    """mteb's EncoderProtocol around an l2v Encoder (cosine similarity), with its ModelMeta."""

    def __init__(self, encoder: Encoder, name: str = "l2v/encoder", revision: str = "unknown", batch_size: int = 32,
                 model_prompts: dict | None = None, languages=("eng-Latn",), license: str | None = None,
                 training_datasets=frozenset()):
        self.encoder, self.name, self.revision, self.batch_size = encoder, name, revision, batch_size
        self.model_prompts, self.languages, self.license = model_prompts, list(languages), license
        self.training_datasets = set(training_datasets)  # MTEB tasks whose data trained it: none for MNTP + SimCSE

    @classmethod
    def from_pretrained(cls, path, *, adapters=(), name: str | None = None, **kwargs) -> "L2VForMTEB":
        """An `l2v export` folder (its settings apply) or a model folder with adapters."""
        from pathlib import Path

        encoder_kwargs = {k: kwargs.pop(k) for k in ("causal", "pooling", "max_length", "dtype", "device")
                          if k in kwargs}
        encoder = Encoder.from_pretrained(path, adapters=adapters, **encoder_kwargs)
        if "revision" not in kwargs:
            kwargs["revision"] = content_revision(path, adapters, dict(encoder_kwargs,
                                                                       model_prompts=kwargs.get("model_prompts")))
        return cls(encoder, name=name or f"l2v/{Path(path).resolve().name}", **kwargs)

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        instruction = task_instruction(task_metadata, prompt_type, self.model_prompts)
        # mteb's encode_kwargs arrive here: batch_size (and show_progress_bar) are honoured
        return self.encoder.encode([[instruction, t] for t in texts], batch_size=kwargs.get("batch_size") or
                                   self.batch_size, show_progress_bar=kwargs.get("show_progress_bar", False))

    def similarity(self, embeddings1, embeddings2):
        a = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings1), dtype=torch.float32), dim=-1)
        b = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings2), dtype=torch.float32), dim=-1)
        return a @ b.T

    def similarity_pairwise(self, embeddings1, embeddings2):
        a = torch.as_tensor(np.asarray(embeddings1), dtype=torch.float32)
        b = torch.as_tensor(np.asarray(embeddings2), dtype=torch.float32)
        return torch.nn.functional.cosine_similarity(a, b, dim=-1)

    @property
    def mteb_model_meta(self):
        """Built from the model itself, unless mteb's load_model set its own (a copy of model_meta's)."""
        if getattr(self, "_meta", None) is not None:
            return self._meta
        from mteb.models.model_meta import ModelMeta, ScoringFunction

        model = getattr(self.encoder, "model", None)  # None: a stand-in encoder (tests)
        n_parameters = n_embedding = memory_mb = None
        if model is not None:
            params = {id(p): p for p in model.parameters()}.values()  # a tied head counted once
            n_parameters = sum(p.numel() for p in params)
            n_embedding = model.model.embed_tokens.weight.numel()
            memory_mb = round(sum(p.numel() * p.element_size() for p in params) / 2**20, 1)
        return ModelMeta(
            loader=None, name=self.name, revision=self.revision, release_date=None, languages=self.languages,
            n_parameters=n_parameters, n_embedding_parameters=n_embedding, memory_usage_mb=memory_mb,
            max_tokens=getattr(self.encoder, "max_length", None),
            embed_dim=getattr(self.encoder, "truncate_dim", None) or self.encoder.dim,  # a stand-in has no truncate_dim
            license=self.license or "not specified", open_weights=True,
            public_training_code=None, public_training_data=None, framework=["PyTorch", "safetensors"],
            similarity_fn_name=ScoringFunction.COSINE, use_instructions=True,
            training_datasets=self.training_datasets, adapted_from=None,
            modalities=["text"], model_type=["dense"])

    @mteb_model_meta.setter
    def mteb_model_meta(self, meta):
        self._meta = meta
