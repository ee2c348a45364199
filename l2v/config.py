"""ModelConfig: everything the transformer needs to know, read from a Hugging Face `config.json`.

Only the two decoder families LLM2Vec was published on are accepted: LLaMA (1/2/3, SmolLM2, ...)
and Mistral. They differ here in a single field that matters to us, `sliding_window`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .checks import L2VError, read_json

SUPPORTED_MODEL_TYPES = ("llama", "mistral")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")
# The shape of the network: a config.json without one of these is an error, never a 7B default.
REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


@dataclass
class ModelConfig:
    model_type: str = "llama"  # "llama" or "mistral"
    vocab_size: int = 32000  # rows of the embedding table and of the LM head
    hidden_size: int = 4096  # D, the width of the residual stream
    intermediate_size: int = 11008  # width of the SwiGLU MLP's hidden layer
    num_hidden_layers: int = 32  # decoder blocks
    num_attention_heads: int = 32  # query heads
    num_key_value_heads: int = 32  # key/value heads: = heads for MHA, fewer for GQA, 1 for MQA
    head_dim: int | None = None  # per-head width; None means hidden_size // num_attention_heads
    rope_theta: float = 10000.0  # base of the rotary frequencies
    rope_scaling: dict | None = None  # None, {"rope_type": "linear", ...} or {"rope_type": "llama3", ...}
    rms_norm_eps: float = 1e-6  # epsilon inside RMSNorm
    max_position_embeddings: int = 4096  # longest context the model was trained for
    sliding_window: int | None = None  # Mistral: a causal query sees only the last `sliding_window` keys
    tie_word_embeddings: bool = False  # the LM head reuses the embedding matrix (SmolLM2 does)
    attention_dropout: float = 0.0  # dropout on attention probabilities, training mode only (SimCSE: 0.3)
    bos_token_id: int | None = 1  # beginning-of-sequence token
    eos_token_id: int | None = 2  # end-of-sequence token
    pad_token_id: int | None = None  # padding token (many LLaMA checkpoints have none)
    extra: dict = field(default_factory=dict, repr=False, compare=False)  # the rest of config.json, kept for saving

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"unknown model_type {self.model_type!r}: l2v supports {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.rope_scaling is not None:
            rope_type = self.rope_scaling.get("rope_type", self.rope_scaling.get("type", "default"))
            if rope_type not in SUPPORTED_ROPE_TYPES:
                raise ValueError(
                    f"unknown rope type {rope_type!r}: l2v supports {', '.join(SUPPORTED_ROPE_TYPES)}"
                )
            self.rope_scaling = None if rope_type == "default" else {**self.rope_scaling, "rope_type": rope_type}

    @property
    def rope_type(self) -> str:
        return "default" if self.rope_scaling is None else self.rope_scaling["rope_type"]

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        # transformers 5.x writes rotary settings as one `rope_parameters` dict holding the theta too;
        # 4.x wrote `rope_theta` and `rope_scaling` separately. Both are read.
        rope = d.pop("rope_parameters", None) or {}
        rope_theta = d.pop("rope_theta", rope.get("rope_theta", 10000.0))
        rope_scaling = d.pop("rope_scaling", None) or {k: v for k, v in rope.items() if k != "rope_theta"} or None
        if "model_type" not in d:
            raise ValueError("config.json has no 'model_type' (expected 'llama' or 'mistral')")
        if d["model_type"] not in SUPPORTED_MODEL_TYPES:  # said first: the other checks would only confuse
            cls(model_type=d["model_type"])
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise L2VError(f"config.json has no {', '.join(repr(k) for k in missing)}")
        bad = [k for k in REQUIRED if isinstance(d[k], bool) or not isinstance(d[k], int) or d[k] < 1]
        if bad:
            raise L2VError(f"config.json: {bad[0]} must be a positive integer, got {d[bad[0]]!r}")
        if d.get("num_key_value_heads") is None:  # as transformers: no field means MHA
            d["num_key_value_heads"] = d["num_attention_heads"]
        known = {f for f in cls.__dataclass_fields__ if f not in ("extra", "rope_theta", "rope_scaling")}
        kwargs = {k: d.pop(k) for k in list(d) if k in known}
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # some configs list several ids
            if isinstance(kwargs.get(key), list):
                kwargs[key] = kwargs[key][0]
        return cls(**kwargs, rope_theta=float(rope_theta), rope_scaling=rope_scaling, extra=d)

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelConfig":
        d = read_json(path)
        if not isinstance(d, dict):
            raise L2VError(f"{path}: expected a JSON object")
        try:
            return cls.from_dict(d)
        except (ValueError, TypeError) as e:
            raise L2VError(f"{path}: {e}".replace(f"{path}: config.json", f"{path}")) from None

    def to_dict(self) -> dict:
        """The config in transformers 5.x's layout, so a folder l2v writes loads in transformers too."""
        d = asdict(self)
        extra = d.pop("extra")
        rope_theta, rope_scaling = d.pop("rope_theta"), d.pop("rope_scaling")
        d["rope_parameters"] = {"rope_theta": rope_theta, "rope_type": "default", **(rope_scaling or {})}
        d["architectures"] = ["MistralForCausalLM" if self.model_type == "mistral" else "LlamaForCausalLM"]
        return {**extra, **d}
