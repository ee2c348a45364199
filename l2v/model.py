"""The LLaMA decoder — and Mistral, Qwen2, Qwen3, Gemma, Gemma-2 as a few switches — in one file, read top-down.

    input_ids (B, T)
      └─ embed_tokens ─────────────────────────────── x (B, T, D)
         └─ N × DecoderLayer:  x = x + Attention(RMSNorm(x), mask, rotary)
                               x = x + MLP(RMSNorm(x))
            └─ norm ───────────────────────────────── hidden states (B, T, D)  ← embeddings are pooled from here
               └─ lm_head (only when predicting tokens, e.g. MNTP) ─ logits (B, T, V)

LLM2Vec step 1 is the `causal` switch: the same weights, but a mask that lets every token see every
other real token. The mask is built by `build_attention_mask` and handed to the attention kernel
explicitly; nothing ever relies on a kernel's own `is_causal` default (the official llm2vec once
stayed causal at batch size 1 because its kernel got no mask and fell back to causal). The one
exception is deliberate: bidirectional attention without padding (MNTP's packed blocks, unpadded
batches) needs no mask, so none is passed and `is_causal=False` is said explicitly — on a GPU that
is what lets SDPA use its flash kernel.

The other families change a handful of lines, each behind a `ModelConfig` field and marked
"Qwen2:", "Qwen3:", "Gemma:" or "Gemma-2:" where it happens (config.py has the table):
biases on q/k/v, a norm on each query/key head, scaled embeddings, (1 + w) norms, GeGLU, extra
norms around attention and MLP, soft-capped scores and logits, local (sliding-window) layers.

Parameter names are Hugging Face's (`model.layers.0.self_attn.q_proj.weight`, ...), so a
transformers checkpoint loads with `load_state_dict(strict=True)` and no renaming.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import ModelConfig
from .runtime.precision import upcast_linear


class Transformer(nn.Module):
    """Decoder-only LM with HF's `LlamaForCausalLM` parameter layout.

    `forward` returns the final hidden states (after the last RMSNorm), which is what embedding
    models pool; call `self.lm_head(hidden)` for logits only where tokens are predicted.
    """

    def __init__(self, config: ModelConfig, causal: bool = True):
        super().__init__()
        self.config = config
        self.causal = causal  # the default for calls that do not say; LLM2Vec sets it to False
        # Recompute blocks in backward instead of keeping their activations: 7B training needs it.
        # True: every block; an int k: the first k only (each block left out saves its recomputation,
        # a third of its share of a LoRA step, where memory allows: `l2v plan --memory-gb`).
        self.gradient_checkpointing: bool | int = False
        # (B, T) padding mask → (B, 1, T, T) attention mask: None is `build_attention_mask` below. A
        # course hands in its own (train.Pieces); that one is then called for every batch, unpadded too.
        self.build_mask = None
        # nn.ModuleDict gives exactly HF's names: model.embed_tokens, model.layers.{i}, model.norm
        self.model = nn.ModuleDict(
            dict(
                embed_tokens=nn.Embedding(config.vocab_size, config.hidden_size),
                layers=nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers)),
                norm=RMSNorm(config.hidden_size, config.rms_norm_eps, plus_one=config.norm_plus_one),
            )
        )
        self.lm_head = LMHead(config.hidden_size, config.vocab_size, softcap=config.final_logit_softcapping)
        if config.tie_word_embeddings:
            self.tie_weights()

    def tie_weights(self):
        """Share one matrix between input embedding and LM head (must be redone after assign-loading)."""
        self.lm_head.weight = self.model.embed_tokens.weight

    def set_attention_dropout(self, p: float):
        """Dropout on attention probabilities in training mode (SimCSE's noise, p = 0.3 in the paper).
        Sets the config and every attention module, so the change cannot silently miss one."""
        self.config.attention_dropout = p
        for layer in self.model.layers:
            layer.self_attn.dropout = p

    @property
    def attn_impl(self) -> str:
        return self.model.layers[0].self_attn.impl

    @attn_impl.setter
    def attn_impl(self, impl: str):
        """"sdpa" (fused kernel, fast) or "math" (softmax(QKᵀ/√d + mask)·V written out, for reading)."""
        if impl not in ("sdpa", "math"):
            raise ValueError(f"unknown attention implementation {impl!r}: use 'sdpa' or 'math'")
        for layer in self.model.layers:
            layer.self_attn.impl = impl

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        causal: bool | None = None,
        output_hidden_states: bool = False,
    ):
        """input_ids, attention_mask: (B, T), mask 1 = real token, 0 = padding.

        Returns hidden (B, T, D); with output_hidden_states also a tuple of N + 1 states in
        transformers' convention: the embeddings, the output of blocks 1..N-1, and `hidden`.
        """
        B, T = input_ids.shape
        causal = self.causal if causal is None else causal
        build_mask = self.build_mask or build_attention_mask
        may_skip = self.attn_impl == "sdpa" and self.build_mask is None  # a handed-in mask always runs
        if not causal and may_skip and (attention_mask is None or bool(attention_mask.all())):
            # Every query sees every key: no mask needed (and the flash kernel takes none). "math" keeps it.
            masks = {"full_attention": None, "sliding_attention": None}
        else:
            if attention_mask is None:
                attention_mask = torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
            mask = build_mask(attention_mask, causal=causal)  # (B, 1, T, T), True = may attend
            # Sliding-window layers (all of Mistral's, every other one of Gemma-2's) see only the last
            # `sliding_window` keys, in causal mode. Bidirectional: full attention in every layer, as
            # the official LLM2Vec does for Mistral (a window in both directions was never trained).
            masks = {"full_attention": mask, "sliding_attention": mask}
            if causal and "sliding_attention" in self.config.layer_types:
                masks["sliding_attention"] = build_mask(
                    attention_mask, causal=causal, sliding_window=self.config.sliding_window
                )

        x = self.model.embed_tokens(input_ids)  # (B, T, D)
        if self.config.scale_embeddings:
            # Gemma: embeddings × √D, so they start on the scale of the residual stream. The factor is
            # rounded to the model's dtype first, as transformers does (bf16: √3584 = 59.87 → 59.75).
            x = x * torch.tensor(self.config.hidden_size**0.5, dtype=x.dtype)
        # Positions are 0..T-1 for every row, also under left padding (as transformers does when no
        # position_ids are given). Rotary attention depends only on the distance i - j, so a shift
        # of all of a row's positions leaves its attention scores unchanged.
        cos, sin = rotary_cos_sin(self.config, T, device=x.device, dtype=x.dtype)  # (T, head_dim) each

        states = [x] if output_hidden_states else None  # L + 1 states kept only when asked for
        ckpt = self.gradient_checkpointing
        checkpointed = self.config.num_hidden_layers if ckpt is True else int(ckpt)  # the first blocks
        for i, (layer, kind) in enumerate(zip(self.model.layers, self.config.layer_types)):
            layer_mask = masks[kind]
            if i < checkpointed and self.training:
                x = checkpoint(layer, x, layer_mask, cos, sin, use_reentrant=False)
            else:
                x = layer(x, layer_mask, cos, sin)
            if states is not None:
                states.append(x)
        x = self.model.norm(x)
        if output_hidden_states:
            return x, (*states[:-1], x)  # HF replaces the last block's output by its normed form
        return x


def build_attention_mask(
    attention_mask: torch.Tensor, *, causal: bool, sliding_window: int | None = None
) -> torch.Tensor:
    """(B, T) padding mask → (B, 1, T, T) boolean mask, True where query i may attend to key j.

    Bidirectional (LLM2Vec): every real token sees every real token. Causal: only keys j ≤ i, and
    in a sliding-window layer (all of Mistral's, Gemma-2's local ones) only the last
    `sliding_window` of them (i - j < window). Bidirectional models use full attention in every
    layer, as the official LLM2Vec does for Mistral.
    """
    B, T = attention_mask.shape
    device = attention_mask.device
    mask = attention_mask.bool()[:, None, None, :].expand(B, 1, T, T)  # keys must be real tokens
    if causal:
        i = torch.arange(T, device=device)[:, None]  # query positions (T, 1)
        j = torch.arange(T, device=device)[None, :]  # key positions   (1, T)
        allowed = j <= i
        if sliding_window is not None:
            allowed = allowed & (i - j < sliding_window)
        mask = mask & allowed
    # Every token may see itself. This changes nothing for real tokens (they already see
    # themselves) but keeps padding rows from being fully masked: softmax over all -inf is NaN,
    # and a NaN in a padded row would leak into real rows of the next layer through 0 · NaN.
    return mask | torch.eye(T, dtype=torch.bool, device=device)


def rope_frequencies(config: ModelConfig, device=None) -> torch.Tensor:
    """Inverse frequencies θ_k = theta^(-2k/d), k = 0..d/2-1, with the optional context-extension rescaling."""
    d = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, d, 2, device=device, dtype=torch.int64).float() / d))
    scaling = config.rope_scaling
    if config.rope_type == "linear":  # positions divided by `factor` = frequencies divided by it
        inv_freq = inv_freq / scaling["factor"]
    elif config.rope_type == "llama3":
        # Llama 3.1: long wavelengths (low frequencies) are slowed by `factor`, short ones kept,
        # and the band between is interpolated smoothly.
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_len = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        inv_freq = torch.where(is_medium, smoothed, scaled)
    return inv_freq


def rotary_cos_sin(config: ModelConfig, T: int, device=None, dtype=torch.float32):
    """cos and sin tables (T, head_dim), computed in fp32 and then cast, as transformers does."""
    inv_freq = rope_frequencies(config, device)  # (head_dim/2,)
    positions = torch.arange(T, device=device, dtype=torch.float32)
    freqs = torch.outer(positions, inv_freq)  # (T, head_dim/2)
    # HF's "rotate-half" layout: dimension k is paired with k + head_dim/2. Meta's original code
    # pairs neighbours (2k, 2k+1) as complex numbers instead; the two differ by a fixed permutation
    # of q/k rows, which HF's conversion script (and llama.cpp's, in reverse) applies to the weights.
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, head_dim)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (k, k + d/2) pair of x (B, H, T, d) by the angle position · θ_k."""
    return x * cos + rotate_half(x) * sin


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, plus_one: bool = False):
        super().__init__()
        self.eps = eps
        # Gemma: the scale is (1 + weight) with weights stored around 0, and the product is taken in
        # fp32 before the cast (LLaMA casts first); its checkpoints are only right read this way.
        self.plus_one = plus_one
        self.weight = nn.Parameter(torch.zeros(dim) if plus_one else torch.ones(dim))

    def forward(self, x):
        x32 = x.float()  # the statistics in fp32, also for a bf16 model
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.plus_one:  # Gemma
            return (x32 * (1.0 + self.weight.float())).to(x.dtype)
        return self.weight * x32.to(x.dtype)


class LMHead(nn.Linear):
    """hidden (…, D) → logits (…, V). Gemma-2 soft-caps them: cap·tanh(logits / cap) keeps every
    logit inside (−cap, cap) and is close to the identity for small ones."""

    def __init__(self, dim: int, vocab_size: int, softcap: float | None = None):
        super().__init__(dim, vocab_size, bias=False)
        self.softcap = softcap
        self.upcast = False  # fp32 arithmetic on a bf16 weight: precision.upcast_compute sets it

    def forward(self, x):
        logits = upcast_linear(x, self.weight) if self.upcast else super().forward(x)
        return logits if self.softcap is None else soft_cap(logits, self.softcap)  # Gemma-2


def soft_cap(x: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.tanh(x / cap) * cap


class Attention(nn.Module):
    """Multi-head attention with grouped key/value heads (GQA; MQA when there is one kv head)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        )
        D = config.hidden_size
        # Qwen2: q, k and v have biases (o does not); `attention_bias: true` puts them on all four.
        self.q_proj = nn.Linear(D, self.n_heads * self.head_dim, bias=config.qkv_bias)
        self.k_proj = nn.Linear(D, self.n_kv_heads * self.head_dim, bias=config.qkv_bias)
        self.v_proj = nn.Linear(D, self.n_kv_heads * self.head_dim, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, D, bias=config.attention_bias)
        if config.qk_norm:
            # Qwen3: an RMSNorm over each head's query and key (weights shared across heads), so the
            # scores' scale is set by a learned weight rather than by how large q and k grew.
            self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        # Gemma-2 scales scores by query_pre_attn_scalar^-½ (its 27B: d_model/heads = 144, not
        # head_dim = 128) and soft-caps them; everyone else scales by head_dim^-½ and does not cap.
        self.scale = (config.query_pre_attn_scalar or self.head_dim) ** -0.5
        self.softcap = config.attn_logit_softcapping
        # SimCSE's only source of noise besides LoRA dropout: dropout on the attention
        # probabilities, nowhere else (LLaMA has no residual or MLP dropout to switch on).
        self.dropout = config.attention_dropout
        self.impl = "sdpa"

    def forward(self, x, mask, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim)  # (B, T, H, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, KV, hd)
        if hasattr(self, "q_norm"):  # Qwen3: normalise each head's vector before rotating it
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, H, T, hd), (B, KV, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, KV, T, hd)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        p = self.dropout if self.training else 0.0
        if self.impl == "sdpa" and self.softcap is None:
            gqa = self.n_kv_heads != self.n_heads
            if mask is not None and gqa:
                # A mask rules out the flash kernel, and the fused kernel that takes one (memory-
                # efficient) has no GQA: given both, SDPA on CUDA falls back to the math kernel and
                # builds (B, H, T, T) in every layer. K/V expanded to all heads keep it fused.
                n_rep = self.n_heads // self.n_kv_heads
                k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)  # (B, H, T, hd)
                gqa = False
            # is_causal stays False: causality, if wanted, is already in `mask` (None: see everything).
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p, is_causal=False, enable_gqa=gqa, scale=self.scale
            )
        else:  # the fused kernel cannot soft-cap scores: Gemma-2 always takes the written-out path
            y = math_attention(q, k, v, mask, p, scale=self.scale, softcap=self.softcap)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H·hd)
        return self.o_proj(y)


def math_attention(q, k, v, mask, dropout_p: float = 0.0, scale: float | None = None, softcap: float | None = None):
    """softmax(QKᵀ/√d + mask)·V, spelled out. q (B, H, T, d); k, v (B, KV, T, d); mask (B, 1, T, T),
    or None where every query may see every key. scale replaces 1/√d if given; softcap (Gemma-2)
    squashes scores to cap·tanh(scores/cap) first."""
    n_rep = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(n_rep, dim=1)  # (B, H, T, d): kv head g serves query heads g·n_rep ...
    v = v.repeat_interleave(n_rep, dim=1)  # (B, H, T, d)
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5 if scale is None else scale)  # (B, H, T, T)
    if softcap is not None:  # Gemma-2
        scores = soft_cap(scores, softcap)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
    probs = F.dropout(probs, p=dropout_p)  # p is already 0 outside training mode
    return probs @ v  # (B, H, T, d)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) ⊙ up(x)). Gemma: GeGLU, the same with tanh-approximated GELU."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        D, F_ = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(D, F_, bias=False)
        self.up_proj = nn.Linear(D, F_, bias=False)
        self.down_proj = nn.Linear(F_, D, bias=False)
        self.act = config.hidden_act

    def forward(self, x):
        gate = self.gate_proj(x)
        gate = F.silu(gate) if self.act == "silu" else F.gelu(gate, approximate="tanh")  # Gemma: GeGLU
        return self.down_proj(gate * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm residual block. Gemma-2 ("sandwich" norms) also normalises each branch's output
    before adding it to the residual stream; its `post_attention_layernorm` is that output norm, and
    the MLP's input norm is called `pre_feedforward_layernorm`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        norm = lambda: RMSNorm(config.hidden_size, config.rms_norm_eps, plus_one=config.norm_plus_one)  # noqa: E731
        self.input_layernorm = norm()
        self.self_attn = Attention(config)
        self.post_attention_layernorm = norm()
        self.mlp = MLP(config)
        self.sandwich = config.sandwich_norms
        if self.sandwich:
            self.pre_feedforward_layernorm = norm()
            self.post_feedforward_layernorm = norm()

    def forward(self, x, mask, cos, sin):
        if self.sandwich:  # Gemma-2
            x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), mask, cos, sin))
            return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
        x = x + self.self_attn(self.input_layernorm(x), mask, cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))
