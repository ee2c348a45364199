"""sentence-transformers reads an `l2v export` folder through this module when its standard modules cannot
(pooling eos, bos or weighted_mean, or a tokenizer that adds a BOS: export.standard_modules_refusal).

    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer("runs/export", trust_remote_code=True)
    q = model.encode_query(["how do plants make food?"], prompt="Given a question, retrieve passages that answer it:")
    d = model.encode_document(["Photosynthesis turns light into sugar."])
    model.similarity(q, d)                                  # cosine, as l2v's Encoder

The folder's modules.json names this class as its one module: it tokenises, runs the l2v model and
pools, exactly as `l2v.Encoder` does — a prompt is the instruction (tokenised with the text as
sentence-transformers does, attended to, never pooled), attention and pooling are the folder's own. sentence-transformers 6 imports a
module from outside its own package only with `trust_remote_code=True`: here that code is the
installed l2v, nothing is fetched or run from the folder.

sentence-transformers is not imported: the class follows its module protocol (`preprocess`,
`forward`, `save`, `load`), so l2v itself never needs the package.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..encoder import Encoder
from ..tokenizer import Batch


class L2VModule(torch.nn.Module):
    save_in_root = True  # the module's files are the folder itself

    def __init__(self, encoder: Encoder, folder):
        super().__init__()
        self.encoder = encoder
        self.model = encoder.model  # registered, so .to(device), .train() and the optimizer reach it
        self.folder = Path(folder)  # the folder it was read from: its tokenizer files are saved along

    @property
    def modalities(self) -> list[str]:
        return ["text"]

    @property
    def max_seq_length(self) -> int:
        return self.encoder.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int):
        self.encoder.max_length = value

    def get_embedding_dimension(self) -> int:
        return self.encoder.dim

    def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict[str, torch.Tensor]:
        """Texts (and a prompt: the instruction) → l2v's padded batch, as a dict of tensors."""
        texts = list(inputs)
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"l2v's module embeds texts (strings), got {type(bad).__name__}")
        batch = self.encoder.tokenize(texts, [prompt] * len(texts) if prompt else None)
        return dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, pool_mask=batch.pool_mask)

    def tokenize(self, texts, **kwargs) -> dict[str, torch.Tensor]:  # sentence-transformers < 6 calls this name
        return self.preprocess(texts, **kwargs)

    def forward(self, features: dict, **kwargs) -> dict:
        batch = Batch(features["input_ids"], features["attention_mask"], features["pool_mask"])
        features["sentence_embedding"] = self.encoder.embed(batch)
        return features

    def save(self, output_path, *args, **kwargs):
        """Write the (possibly fine-tuned) model as an export folder's weights and settings."""
        from .export import encoder_settings, write_model_files

        model = self.encoder.model
        settings = {**encoder_settings(self.folder), "causal": model.causal, "pooling": self.encoder.pooling,
                    "max_length": self.encoder.max_length,
                    "dtype": str(model.lm_head.weight.dtype).removeprefix("torch.")}
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        write_model_files(output_path, model.config, state, self.folder, settings)

    @classmethod
    def load(cls, model_name_or_path, subfolder: str = "", **kwargs) -> "L2VModule":
        folder = Path(model_name_or_path) / subfolder
        if not folder.is_dir():
            raise FileNotFoundError(f"l2v reads local folders only; {folder} is not one")
        return cls(Encoder.from_pretrained(folder), folder)
