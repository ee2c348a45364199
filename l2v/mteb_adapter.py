"""Run real MTEB (2.x) on an l2v Encoder — for users with internet and `pip install mteb`.

    import mteb
    from l2v import Encoder
    from l2v.mteb_adapter import L2VForMTEB

    model = L2VForMTEB(Encoder.from_pretrained("weights/smollm2-135m-instruct", adapters=[...]))
    mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark"]))

Instructions are chosen as mteb's own LLM2Vec wrapper does: the task's prompt (for retrieval,
its query prompt), a trailing "." dropped and ":" appended, given as `[instruction, text]` pairs
(so it is attended to, not pooled); documents carry no instruction. mteb is imported only when
this wrapper is used; the rest of l2v never needs it.
"""

from __future__ import annotations

import numpy as np
import torch

from .encoder import Encoder


def llm2vec_instruction(prompt: str | None) -> str:
    """"Given a claim, find documents that refute the claim." → "Given a claim, find documents that refute the claim:"."""
    if not prompt:
        return ""
    return prompt if prompt.endswith(":") else prompt.strip(".") + ":"


def task_instruction(task_metadata, prompt_type=None) -> str:
    role = getattr(prompt_type, "value", prompt_type)
    if role == "document":
        return ""  # LLM2Vec encodes documents without an instruction
    prompt = getattr(task_metadata, "prompt", None)
    if isinstance(prompt, dict):
        prompt = prompt.get(role or "query")
    return llm2vec_instruction(prompt)


class L2VForMTEB:
    """mteb's EncoderProtocol around an l2v Encoder (cosine similarity)."""

    def __init__(self, encoder: Encoder, name: str = "l2v/encoder", revision: str = "local", batch_size: int = 32):
        self.encoder, self.name, self.revision, self.batch_size = encoder, name, revision, batch_size

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        instruction = task_instruction(task_metadata, prompt_type)
        return self.encoder.encode([[instruction, t] for t in texts], batch_size=self.batch_size,
                                   show_progress_bar=False)

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
        from mteb.models.model_meta import ModelMeta, ScoringFunction

        return ModelMeta.create_empty(overwrites=dict(name=self.name, revision=self.revision,
                                                      similarity_fn_name=ScoringFunction.COSINE))
