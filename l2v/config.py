"""ModelConfig: everything the transformer needs to know, read from a Hugging Face `config.json`.

Six decoder families are accepted. LLM2Vec was published on LLaMA (1/2/3, SmolLM2, ...) and
Mistral; the official code also converts Gemma and Qwen2, and Qwen3 and Gemma-2 follow the same
pattern. Each family is LLaMA plus a few switches, every one a field below:

    family    what changes relative to LLaMA                                   field(s)
    mistral   causal attention sees only the last `sliding_window` keys        sliding_window, layer_types
    qwen2     biases on q, k, v                                                qkv_bias
    qwen3     RMSNorm on each query and key head before rotary; own head_dim   qk_norm, head_dim
    gemma     embeddings × √hidden, RMSNorm weight 1 + w, GeGLU, tied head     scale_embeddings, norm_plus_one,
                                                                               hidden_act, tie_word_embeddings
    gemma2    gemma + norms after attention and MLP too, tanh soft-capping     sandwich_norms, query_pre_attn_scalar,
              of attention and final logits, local/global layers               *_softcapping, layer_types

transformers hard-codes some of these per model class (config.json never says "Qwen2 has q/k/v
biases"), so `FAMILY_TRAITS` states them; the rest are read from config.json under HF's names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .runtime.checks import L2VError
from .runtime.files import read_json

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")
SUPPORTED_ACTIVATIONS = ("silu", "gelu_pytorch_tanh")  # SwiGLU (LLaMA, Mistral, Qwen) and GeGLU (Gemma)
LAYER_TYPES = ("full_attention", "sliding_attention")

# What a family's transformers class does that its config.json does not say (the code hard-codes it).
FAMILY_TRAITS = {
    "llama": {},
    "mistral": {},
    "qwen2": dict(qkv_bias=True),
    "qwen3": dict(qk_norm=True),
    "gemma": dict(scale_embeddings=True, norm_plus_one=True),
    "gemma2": dict(scale_embeddings=True, norm_plus_one=True, sandwich_norms=True),
}
# transformers' defaults where a family's config class differs from LLaMA's; used when config.json
# leaves the key out (older hub files do).
FAMILY_DEFAULTS = {
    "qwen3": dict(head_dim=128),
    "gemma": dict(head_dim=256, hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True),
    "gemma2": dict(head_dim=256, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
                   query_pre_attn_scalar=256, sliding_window=4096, attn_logit_softcapping=50.0,
                   final_logit_softcapping=30.0),
}
# The shape of the network: a config.json without one of these is an error, never a 7B default.
REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


@dataclass
class ModelConfig:
    model_type: str = "llama"  # one of SUPPORTED_MODEL_TYPES
    vocab_size: int = 32000  # rows of the embedding table and of the LM head
    hidden_size: int = 4096  # D, the width of the residual stream
    intermediate_size: int = 11008  # width of the gated MLP's hidden layer
    hidden_act: str = "silu"  # the MLP's gate activation: "silu" (SwiGLU) or "gelu_pytorch_tanh" (GeGLU, Gemma)
    num_hidden_layers: int = 32  # decoder blocks
    num_attention_heads: int = 32  # query heads
    num_key_value_heads: int = 32  # key/value heads: = heads for MHA, fewer for GQA, 1 for MQA
    head_dim: int | None = None  # per-head width; None means hidden_size // num_attention_heads
    rope_theta: float = 10000.0  # base of the rotary frequencies
    rope_scaling: dict | None = None  # None, {"rope_type": "linear", ...} or {"rope_type": "llama3", ...}
    rms_norm_eps: float = 1e-6  # epsilon inside RMSNorm
    max_position_embeddings: int = 4096  # longest context the model was trained for
    sliding_window: int | None = None  # a causal query of a "sliding_attention" layer sees only the last this many keys
    layer_types: list | None = None  # per layer "full_attention" / "sliding_attention"; None: all sliding if a window is set
    tie_word_embeddings: bool = False  # the LM head reuses the embedding matrix (SmolLM2 does)
    attention_dropout: float = 0.0  # dropout on attention probabilities, training mode only (SimCSE: 0.3)
    bos_token_id: int | None = 1  # beginning-of-sequence token
    eos_token_id: int | None = 2  # end-of-sequence token
    pad_token_id: int | None = None  # padding token (many LLaMA checkpoints have none)
    # The family switches (FAMILY_TRAITS fills them from model_type; None means "the family's own").
    qkv_bias: bool | None = None  # Qwen2: q, k, v projections have biases
    attention_bias: bool = False  # LLaMA/Qwen3/Gemma `attention_bias: true`: biases on q, k, v and o
    qk_norm: bool | None = None  # Qwen3: RMSNorm over each head's query and key before rotary
    scale_embeddings: bool | None = None  # Gemma: embeddings multiplied by √hidden_size
    norm_plus_one: bool | None = None  # Gemma: RMSNorm scales by (1 + weight), weights stored around 0
    sandwich_norms: bool | None = None  # Gemma-2: also a norm after attention and around the MLP
    query_pre_attn_scalar: float | None = None  # Gemma-2: scores scaled by this^-½ instead of head_dim^-½
    attn_logit_softcapping: float | None = None  # Gemma-2: scores → cap·tanh(scores/cap) before the mask
    final_logit_softcapping: float | None = None  # Gemma-2: logits → cap·tanh(logits/cap)
    extra: dict = field(default_factory=dict, repr=False, compare=False)  # the rest of config.json, kept for saving

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"unknown model_type {self.model_type!r}: l2v supports {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        for trait in ("qkv_bias", "qk_norm", "scale_embeddings", "norm_plus_one", "sandwich_norms"):
            if getattr(self, trait) is None:
                setattr(self, trait, FAMILY_TRAITS[self.model_type].get(trait, False))
        if self.attention_bias:
            self.qkv_bias = True
        if self.hidden_act == "gelu" and self.model_type in ("gemma", "gemma2"):
            self.hidden_act = "gelu_pytorch_tanh"  # as transformers does: Gemma's "gelu" always meant the tanh form
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {self.hidden_act!r}: l2v supports {', '.join(SUPPORTED_ACTIVATIONS)}")
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.layer_types is None:  # Mistral: every layer slides; LLaMA: none does
            kind = "full_attention" if self.sliding_window is None else "sliding_attention"
            self.layer_types = [kind] * self.num_hidden_layers
        self.layer_types = list(self.layer_types)
        if len(self.layer_types) != self.num_hidden_layers or not set(self.layer_types) <= set(LAYER_TYPES):
            raise ValueError(f"layer_types must list {self.num_hidden_layers} of {', '.join(LAYER_TYPES)}; "
                             f"got {self.layer_types}")
        if "sliding_attention" in self.layer_types and self.sliding_window is None:
            raise ValueError("layer_types has sliding_attention layers but sliding_window is not set")
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
        if "rope_theta" in d and "rope_theta" in rope and float(d["rope_theta"]) != float(rope["rope_theta"]):
            raise ValueError(f"config.json has rope_theta {d['rope_theta']} and rope_parameters.rope_theta "
                             f"{rope['rope_theta']}: transformers 4.x reads the first, 5.x the second")
        rope_theta = d.pop("rope_theta", rope.get("rope_theta", 10000.0))
        rope_scaling = d.pop("rope_scaling", None) or {k: v for k, v in rope.items() if k != "rope_theta"} or None
        if "model_type" not in d:
            raise ValueError(f"config.json has no 'model_type' (expected one of {', '.join(SUPPORTED_MODEL_TYPES)})")
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
        family = d["model_type"]
        d = {**FAMILY_DEFAULTS.get(family, {}), **d}
        if family == "gemma2":  # Gemma-2's config names its activation `hidden_activation`
            d["hidden_act"] = d.pop("hidden_activation") or d.get("hidden_act", "gelu_pytorch_tanh")
        if family == "qwen2":  # transformers' Qwen2 always has q/k/v biases and never an o bias
            d.pop("attention_bias", None)
        if family in ("qwen2", "qwen3"):
            # Qwen's configs always carry a window (e.g. 32768) and switch it on with use_sliding_window;
            # then only layers from max_window_layers on slide (transformers' rule).
            if not d.pop("use_sliding_window", False):
                d["sliding_window"] = None
            if d.get("sliding_window") is None:
                d.pop("layer_types", None)  # all full_attention, whatever the file lists
            elif d.get("layer_types") is None:
                first = d.get("max_window_layers", 28)
                d["layer_types"] = ["sliding_attention" if i >= first else "full_attention"
                                    for i in range(d["num_hidden_layers"])]
        if family == "gemma2" and d.get("layer_types") is None:  # local, global, local, ...: layer 0 slides
            d["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention"
                                for i in range(d["num_hidden_layers"])]
        if d.get("mlp_bias"):
            raise ValueError("unsupported mlp_bias: true: l2v's MLP has no biases")
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
        """The config in both transformers layouts, so a folder l2v writes loads the same in 4.x and 5.x.

        5.x reads `rope_parameters` (and prefers it when both are there); 4.x — which the official
        llm2vec pins — reads only the top-level `rope_theta` / `rope_scaling` and would otherwise fall
        back, silently, to theta = 10000.
        """
        d = asdict(self)
        extra = d.pop("extra")
        rope_theta, rope_scaling = d["rope_theta"], d["rope_scaling"]
        d["rope_parameters"] = {"rope_theta": rope_theta, "rope_type": "default", **(rope_scaling or {})}
        d["architectures"] = [ARCHITECTURES[self.model_type]]
        for trait in ("qkv_bias", "qk_norm", "scale_embeddings", "norm_plus_one", "sandwich_norms"):
            d.pop(trait)  # implied by model_type; transformers does not read them
        if self.model_type in ("llama", "mistral"):
            d.pop("layer_types")  # not theirs (transformers reads a Mistral config with layer_types as Ministral)
        if self.model_type == "gemma2":
            d["hidden_activation"] = d.pop("hidden_act")
        if self.model_type in ("qwen2", "qwen3"):
            d["use_sliding_window"] = self.sliding_window is not None
        return {**extra, **d}


ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "qwen3": "Qwen3ForCausalLM", "gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM"}
