"""`Encoder`: a decoder LLM used as a text encoder, in the sentence-transformers style.

    enc = Encoder.from_pretrained("weights/smollm2-135m-instruct")       # bidirectional + mean
    q = enc.encode_query(["how do plants make food?"], instruction="Retrieve a passage that answers the question")
    d = enc.encode_document(["Photosynthesis turns light into sugar.", "Paris is in France."])
    enc.similarity(q, d)                                                   # (1, 2) cosine similarities
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .formats.loading import load_model
from .pooling import POOLINGS, pool
from .runtime.checks import L2VError, check_args, warn_max_length
from .runtime.precision import warn_fp16_under_bf16_autocast
from .tokenizer import DEFAULT_MAX_LENGTH, Tokenizer, instruction_prefix

ACCEPTED = "a string, a list of strings, or a list of [instruction, text] pairs"


class Encoder:
    """A model and its tokenizer as a text encoder: texts (with instructions) in, one vector each out.

    pooling: mean, weighted_mean, eos (an EOS appended), last or bos (pooling.py); max_length: tokens
    per text; autocast: bf16 autocast; prompts: named instructions (encode(prompt_name=...)).
    pool_fn(hidden (B, T, D), mask (B, T)) -> (B, D): your own pooling in place of `pooling`'s, given
    the mask `pooling` pools over (the text tokens; for bos, every real token) — train.Pieces hands
    a course's to a training run; `pooling` still lays the texts out. echo: echo embeddings (below)."""

    def __init__(self, model, tokenizer: Tokenizer, *, pooling: str = "mean", max_length: int = DEFAULT_MAX_LENGTH,
                 autocast: bool = False, prompts: dict[str, str] | None = None, pool_fn=None, echo: bool = False):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
        check_args(max_length=max_length)
        warn_max_length(max_length, model.config)
        if pooling == "eos" and tokenizer.eos_id is None:
            raise L2VError("pooling 'eos' appends the tokenizer's EOS token, but this tokenizer names none "
                             "(no eos_token in tokenizer_config.json); pooling 'last' pools the last text token")
        if pooling == "bos" and not (tokenizer.add_bos and tokenizer.bos_id is not None):
            raise L2VError("pooling 'bos' pools the BOS token, but this tokenizer adds none "
                             "(add_bos_token is not set); use 'mean', or 'last' for one token")
        self.model, self.tokenizer = model.eval(), tokenizer
        # LLM2Vec's eos_token mode: EOS after every text, unless the tokenizer already ends texts with it.
        self.appends_eos = pooling == "eos" and not tokenizer.add_eos
        self.pooling, self.max_length, self.pool_fn = pooling, max_length, pool_fn
        self.prompts = dict(prompts or {})  # named instructions, for encode(prompt_name=...)
        self.truncate_dim = None  # keep only the first k dimensions (encode(truncate_dim=...) for one call)
        self.normalize = False  # unit-length embeddings unless encode says otherwise (an export's --normalize)
        self.echo = echo
        # bf16 autocast: matmuls in bf16, weights (and merged adapters) kept in their own dtype.
        # Faster where bf16 is native; embeddings then agree with fp32 to a cosine of about 0.999.
        self.autocast = autocast
        if autocast:
            warn_fp16_under_bf16_autocast(model, "Encoder")

    @classmethod
    def from_pretrained(cls, path, *, adapters: Sequence = (), causal: bool | None = None, pooling: str | None = None,
                        max_length: int | None = None, dtype=None, device=None, autocast: bool = False,
                        echo: bool = False) -> "Encoder":
        """Load a model folder; `adapters` (PEFT-format LoRA folders) are merged into it in order,
        as LLM2Vec stacks MNTP and then SimCSE. causal, pooling, max_length left as None take the
        folder's own settings (an `l2v export` folder's l2v_encoder.json), else LLM2Vec's: False
        (bidirectional), "mean", 512."""
        from .formats.export import encoder_settings, resolve_encoder

        causal, pooling, max_length = resolve_encoder(path, causal, pooling, max_length)
        model = load_model(path, dtype=dtype, device=device, causal=causal)
        if adapters:
            from .formats.peft import merge_adapters

            merge_adapters(model, adapters, base_model=path)
        encoder = cls(model, Tokenizer(path), pooling=pooling, max_length=max_length, autocast=autocast,
                      prompts=encoder_settings(path).get("prompts"), echo=echo)
        saved = encoder_settings(path)
        encoder.truncate_dim = saved.get("truncate_dim")  # an export's Matryoshka size
        encoder.normalize = bool(saved.get("normalize", False))
        return encoder

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    # sentence-transformers' names
    def get_embedding_dimension(self) -> int:
        return self.truncate_dim or self.dim

    @property
    def max_seq_length(self) -> int:
        return self.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int):
        check_args(max_length=value)
        self.max_length = value

    def encode(self, texts, *, instruction: str | None = None, batch_size: int = 32, normalize: bool | None = None,
               show_progress_bar: bool | None = None, convert_to_numpy: bool = True, prompt: str | None = None,
               prompt_name: str | None = None, normalize_embeddings: bool | None = None,
               convert_to_tensor: bool = False, precision: str = "float32", device=None,
               truncate_dim: int | None = None):
        """Embed texts → (N, D) (or (D,) for one string). Items may be [instruction, text] pairs;
        `instruction` applies to plain strings. Instruction tokens are attended to, not pooled.

        sentence-transformers' spellings work too: `prompt` (= instruction), `prompt_name` (one of
        `self.prompts`, an exported folder's named instructions), `normalize_embeddings` (= normalize),
        `convert_to_tensor`, and `precision` "int8" / "uint8" (per-dimension ranges from these
        embeddings) or "binary" / "ubinary" (sign bits, 8 a byte), as its `quantize_embeddings`;
        `device` (the model moves there, and stays), `truncate_dim` (the first k dimensions, then normalised if
        asked: Matryoshka-style); texts may be a numpy array or a pandas Series too."""
        check_args(batch_size=batch_size)
        if device is not None:
            from .formats.loading import resolve_device

            self.model.to(resolve_device(device))
        truncate_dim = self.truncate_dim if truncate_dim is None else truncate_dim
        if truncate_dim is not None and (isinstance(truncate_dim, bool) or not isinstance(truncate_dim, (int, np.integer))
                                         or not 0 < truncate_dim <= self.dim):
            raise L2VError(f"truncate_dim must be an integer from 1 to {self.dim}, got {truncate_dim!r}")
        if hasattr(texts, "tolist") and not isinstance(texts, str):  # numpy arrays, pandas Series
            texts = texts.tolist()
        instruction = self._instruction(instruction, prompt, prompt_name)
        normalize = normalize if normalize_embeddings is None else normalize_embeddings
        normalize = self.normalize if normalize is None else normalize
        if precision not in PRECISIONS:
            raise L2VError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        if instruction is not None and not isinstance(instruction, str):
            raise L2VError(f"instruction must be a string or None, got {type(instruction).__name__}")
        single = isinstance(texts, str)
        instructions, bodies = _split_inputs([texts] if single else texts, instruction)
        if self.echo:
            instructions, bodies = self.echo_inputs(instructions, bodies)
        sequences = [self.layout(p, b) for p, b in self.tokenizer.encode_pairs(instructions, bodies)]

        out = torch.empty(len(sequences), self.dim, dtype=torch.float32)

        def embed(idx: list[int], batch):
            out[idx] = self.embed(batch.to(self.device)).float().cpu()

        self._each_batch(sequences, batch_size, show_progress_bar, embed)
        if truncate_dim is not None:
            out = out[:, :truncate_dim]
        if normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        if precision != "float32":
            out = torch.from_numpy(quantize(out.numpy(), precision))
        if single:
            out = out[0]
        if convert_to_tensor or not convert_to_numpy:
            return out.to(self.device)  # as sentence-transformers: on the model's device
        return out.numpy()

    def _instruction(self, instruction, prompt, prompt_name) -> str | None:
        given = [n for n, v in (("instruction", instruction), ("prompt", prompt), ("prompt_name", prompt_name))
                 if v is not None]
        if len(given) > 1:
            raise L2VError(f"give one of instruction, prompt, prompt_name (got {' and '.join(given)})")
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise L2VError(f"no prompt named {prompt_name!r}: this encoder has "
                               f"{', '.join(map(repr, self.prompts)) or 'none'}")
            return self.prompts[prompt_name] or None
        return prompt if prompt is not None else instruction

    def encode_poolings(self, texts, poolings: Sequence[str], *, instruction: str | None = None,
                        batch_size: int = 32, show_progress_bar: bool | None = None) -> dict[str, np.ndarray]:
        """Several poolings of a *causal* model from one forward pass → {pooling: (N, D)}; the fast
        path beside `encode` (which it equals up to float rounding: tests/test_encoder.py).

        Under causal attention a token's state depends only on the tokens before it, so the EOS
        that pooling 'eos' appends leaves every text token's state as it was: one pass over
        text + EOS gives 'eos' (the EOS position), and 'last', 'mean', 'weighted_mean' (the text
        positions before it). A text so long that the EOS would not fit in max_length gets the
        cut 'eos' layout in a second, separate sequence, so every pooling sees what `encode` sees."""
        poolings = list(dict.fromkeys(poolings))
        unknown = [p for p in poolings if p not in ("mean", "weighted_mean", "last", "eos")]
        if unknown:
            raise L2VError(f"encode_poolings: pooling(s) {', '.join(map(repr, unknown))} cannot share a pass; "
                           f"choose among mean, weighted_mean, last, eos")
        if self.echo:
            raise L2VError("encode_poolings does not lay texts out twice: use encode for echo embeddings")
        if not self.model.causal:
            raise L2VError("encode_poolings needs a causal model: with bidirectional attention an appended EOS "
                           "changes every state, so each pooling needs its own pass (use encode)")
        if "eos" in poolings and self.tokenizer.eos_id is None:
            raise L2VError("pooling 'eos' appends the tokenizer's EOS token, but this tokenizer names none")
        check_args(batch_size=batch_size)
        instructions, bodies = _split_inputs(texts, instruction)
        append = "eos" in poolings and not self.tokenizer.add_eos
        # One job per sequence to run: (ids, n_prefix, n_text_end, text index, poolings it serves).
        # Text positions are n_prefix .. n_text_end - 1; an appended EOS, if any, comes after them.
        jobs = []
        text_poolings = [q for q in poolings if q != "eos"]
        for i, (p, b) in enumerate(self.tokenizer.encode_pairs(instructions, bodies)):
            ids, n_prefix = self.tokenizer.layout(p, b, self.max_length)  # what mean and last see
            if not append or not b:  # nothing appended (an empty text is the EOS alone already)
                jobs.append((ids, n_prefix, len(ids), i, poolings))
            elif len(ids) < self.max_length:  # room for the EOS: one pass serves every pooling
                jobs.append((ids + [self.tokenizer.eos_id], n_prefix, len(ids), i, poolings))
            else:  # cut by max_length: 'eos' gets its own, shorter cut with EOS in the last place
                if text_poolings:
                    jobs.append((ids, n_prefix, len(ids), i, text_poolings))
                eos_ids, eos_prefix = self.layout(p, b, append_eos=True)
                jobs.append((eos_ids, eos_prefix, len(eos_ids) - 1, i, ["eos"]))

        out = {q: torch.empty(len(bodies), self.dim, dtype=torch.float32) for q in poolings}

        def embed(idx: list[int], batch):
            chunk, T = [jobs[j] for j in idx], batch.input_ids.shape[1]
            text_mask = torch.zeros_like(batch.pool_mask)  # (B, T): each row's text positions
            eos_mask = torch.zeros_like(batch.pool_mask)  # (B, T): each row's EOS position
            for row, (ids, n_prefix, n_text_end, _, _) in enumerate(chunk):
                start = T - len(ids) if self.tokenizer.padding_side == "left" else 0
                text_mask[row, start + n_prefix : start + n_text_end] = 1
                eos_mask[row, start + len(ids) - 1] = 1  # the EOS (appended, or the tokenizer's own)
            hidden = self.model(batch.input_ids.to(self.device), batch.attention_mask.to(self.device))  # (B, T, D)
            for q in poolings:
                vectors = pool(hidden, (eos_mask if q == "eos" else text_mask).to(self.device), q).float().cpu()
                for row, (*_, i, serves) in enumerate(chunk):
                    if q in serves:
                        out[q][i] = vectors[row]

        self._each_batch([(ids, n) for ids, n, *_ in jobs], batch_size, show_progress_bar, embed)
        return {q: v[:, : self.truncate_dim].numpy() for q, v in out.items()}  # [:, :None]: every dimension

    def echo_inputs(self, instructions: list[str], texts: list[str]) -> tuple[list[str], list[str]]:
        """Echo embeddings (Springer et al., 2024): "Rewrite the sentence: {text}, rewritten sentence: {text}",
        pooled over the second copy only. Under causal attention that copy's tokens have read the whole
        text once already, so their mean sees what comes after each word. The first copy joins the
        instruction (attended to, not pooled); each copy gets half of max_length, so the second is never cut."""
        head, middle = ECHO_TEMPLATE
        instructions = [instruction_prefix(i) + " " if i else "" for i in instructions]
        fixed = self.tokenizer.encode_batch([f"{i}{head}{middle}" for i in instructions])
        out_instructions, out_texts = [], []
        for instruction, ids, text, frame in zip(instructions, self.tokenizer.encode_batch(texts), texts, fixed):
            room = (self.max_length - len(frame) - 2) // 2 - 1  # BOS, EOS; a token of slack where copies merge
            if room < 1:
                raise L2VError(f"max_length {self.max_length} leaves no room for a text twice after the echo template")
            if len(ids) > room:  # cut by tokens, so both copies fit whole
                text = self.tokenizer.decode(ids[:room])
            out_instructions.append(f"{instruction}{head}{text}{middle}")
            out_texts.append(" " + text if text else text)
        return out_instructions, out_texts

    def _each_batch(self, sequences: list[tuple[list[int], int]], batch_size: int, show: bool | None, fn):
        """fn(indices, padded Batch) for `sequences` ((ids, n_prefix) each) in batches, longest first,
        without autograd and under the encoder's autocast. Longest first: batches of similar lengths
        waste little on padding, and an out-of-memory error shows at once rather than at the end."""
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
        starts = range(0, len(order), batch_size)
        show = len(starts) > 1 if show is None else show
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
            for s in tqdm(starts, desc="encode", unit="batch", disable=not show):
                idx = order[s : s + batch_size]
                fn(idx, self.tokenizer.pad([sequences[i] for i in idx]))

    def layout(self, instruction_ids: list[int], text_ids: list[int], append_eos: bool | None = None):
        """The tokenizer's layout, plus (pooling 'eos') the EOS id after the text: attended to, and
        the one position pooled. Truncation keeps it. An empty text is the EOS token alone already."""
        append_eos = self.appends_eos if append_eos is None else append_eos
        if not append_eos or not text_ids:
            return self.tokenizer.layout(instruction_ids, text_ids, self.max_length)
        ids, n_prefix = self.tokenizer.layout(instruction_ids, text_ids + [self.tokenizer.eos_id], self.max_length)
        ids[-1] = self.tokenizer.eos_id  # if truncation cut into the text, EOS takes the last place
        return ids, n_prefix

    def tokenize(self, texts: list[str], instructions: list[str] | None = None):
        """A padded Batch laid out for this encoder's pooling (training builds its batches here)."""
        pairs = self.tokenizer.encode_pairs(instructions or [""] * len(texts), texts)
        return self.tokenizer.pad([self.layout(p, b) for p, b in pairs])

    def embed(self, batch):
        """One padded Batch → (B, D) pooled embeddings, with gradients if enabled (training uses this)."""
        hidden = self.model(batch.input_ids, batch.attention_mask)  # (B, T, D)
        mask = batch.attention_mask if self.pooling == "bos" else batch.pool_mask
        return pool(hidden, mask, self.pooling) if self.pool_fn is None else self.pool_fn(hidden, mask)

    def encode_query(self, texts, **kwargs):
        """As sentence-transformers: the "query" prompt unless an instruction or prompt is given."""
        return self.encode(texts, **self._named_prompt("query", kwargs))

    def encode_document(self, texts, **kwargs):
        """Documents carry no instruction (as in LLM2Vec's retrieval setup) unless one is given
        (or the encoder names a "document" prompt)."""
        return self.encode(texts, **self._named_prompt("document", kwargs))

    def _named_prompt(self, name: str, kwargs: dict) -> dict:
        given = any(kwargs.get(k) is not None for k in ("instruction", "prompt", "prompt_name"))
        return kwargs if given or not self.prompts.get(name) else {**kwargs, "prompt_name": name}

    @staticmethod
    def similarity(a, b):
        """Cosine similarity matrix (len(a), len(b)) between two sets of embeddings."""
        return (_unit_rows(a) @ _unit_rows(b).T).numpy()

    @staticmethod
    def similarity_pairwise(a, b):
        """Cosine similarity of a[i] and b[i] for each i → (N,)."""
        return (_unit_rows(a) * _unit_rows(b)).sum(-1).numpy()


PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
# The echo paper's template around the two copies. The second copy starts with its own space (" text"), so
# the joint tokenisation cannot merge the template's last space into the text's first word.
ECHO_TEMPLATE = ("Rewrite the sentence: ", ", rewritten sentence:")


def quantize(embeddings: np.ndarray, precision: str) -> np.ndarray:
    """(N, D) float → int8 / uint8: each dimension's [min, max] over these N cut into 256 steps;
    binary / ubinary: one bit a dimension (> 0), packed 8 to a byte (int8 shifted by -128, or uint8)."""
    if precision in ("int8", "uint8"):
        if embeddings.shape[0] < 2:
            raise L2VError(f"precision {precision!r} takes its ranges from the embeddings themselves: give two or more texts")
        low, high = embeddings.min(axis=0), embeddings.max(axis=0)
        step = np.where(high > low, (high - low) / 255, 1)
        levels = np.clip(np.floor((embeddings - low) / step), 0, 255)
        return levels.astype(np.uint8) if precision == "uint8" else (levels - 128).astype(np.int8)
    bits = np.packbits(embeddings > 0, axis=-1)
    return bits if precision == "ubinary" else (bits.astype(np.int16) - 128).astype(np.int8)


def _unit_rows(x) -> torch.Tensor:
    x = x.detach().float().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return torch.nn.functional.normalize(x.reshape(-1, x.shape[-1]), dim=-1)  # (N, D), a vector → (1, D)


def _split_inputs(items, instruction: str | None) -> tuple[list[str], list[str]]:
    if not isinstance(items, Sequence) or isinstance(items, bytes):
        raise TypeError(f"texts must be {ACCEPTED}; got {type(items).__name__}")
    instructions, bodies = [], []
    for i, item in enumerate(items):
        if isinstance(item, str):
            instructions.append(instruction or "")
            bodies.append(item)
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            instructions.append(item[0])
            bodies.append(item[1])
        else:
            raise TypeError(f"texts must be {ACCEPTED}; item {i} is {item!r}")
    return instructions, bodies
