"""`l2v plan`: will this training run fit on that GPU? Memory arithmetic before spending any.

A LoRA step holds the base weights (in the training dtype), LoRA and AdamW (16 bytes a LoRA
parameter: fp32 weight, gradient and two moments), the activations autograd keeps (per token and
layer: `activation_bytes_per_token_layer`; with gradient checkpointing each block's input, plus one
block's worth while it is recomputed), the gradients alive in one block's backward, and for MNTP
the LM head at the masked positions. Backward meets the LM head first, then the kept blocks, then
the checkpointed ones; the step peaks at the largest of those moments (`Plan.total`). Each row is
read off this code and checked on a CPU in tests/test_plan.py — the bytes autograd keeps, and the
peak of the whole step; docs/scaling.md explains them one by one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config import ModelConfig
from ..lora import DEFAULT_TARGETS
from ..mntp import FAMILY_MASKING
from ..runtime.precision import DTYPES, UPCAST_CHUNK, native_bf16
from ..settings import LoRASettings, SimCSESettings

MODEL_SHAPES = {  # the config.json fields that set a model's size: `l2v plan --config NAME`
    "smollm2-135m": dict(model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         tie_word_embeddings=True),
    "llama-2-7b": dict(model_type="llama", vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32),
    "mistral-7b": dict(model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, sliding_window=4096),
    "llama-3-8b": dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0),
    # The other families, from their config.json files on the hub.
    "qwen2.5-0.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, rope_theta=1e6,
                         tie_word_embeddings=True),
    "qwen2.5-7b": dict(model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                       num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, rope_theta=1e6),
    "qwen3-0.6b": dict(model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                       num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                       rope_theta=1e6, tie_word_embeddings=True),
    "gemma-2-2b": dict(model_type="gemma2", vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                       num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                       hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True, query_pre_attn_scalar=256,
                       sliding_window=4096, layer_types=["sliding_attention", "full_attention"] * 13,
                       attn_logit_softcapping=50.0, final_logit_softcapping=30.0),
    "gemma-2-9b": dict(model_type="gemma2", vocab_size=256000, hidden_size=3584, intermediate_size=14336,
                       num_hidden_layers=42, num_attention_heads=16, num_key_value_heads=8, head_dim=256,
                       hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True, query_pre_attn_scalar=256,
                       sliding_window=4096, layer_types=["sliding_attention", "full_attention"] * 21,
                       attn_logit_softcapping=50.0, final_logit_softcapping=30.0),
}
SEQUENCES_PER_EXAMPLE = {"mntp": 1, "simcse": 2, "supervised": 3}  # SimCSE: two views; supervised: q, pos, neg
BYTES = {name: dtype.itemsize for name, dtype in DTYPES.items()}
PROCESS_BYTES_CPU = int(0.3 * 2**30)  # resident size of a Python process with torch + tokenizers loaded


@dataclass
class Plan:
    weights: int
    lora_and_optimizer: int
    activations: int  # every block's, and the final norm's (and GradCache's embeddings)
    lm_head: int
    backward: int  # the gradients alive in one block's backward, beside its activations
    block: int  # one block's activations
    block_input: int  # what a checkpointed block keeps: its input
    layers: int
    process: int = 0  # CPU only: the Python process itself
    upcast: int = 0  # CPU without native bf16: the fp32 copy of the weight in use
    compute_dtype: str = ""  # the dtype activations are in (fp32 for bf16 weights without native bf16)

    @property
    def activations_checkpointed(self) -> int:
        """Every block's input, plus one block's activations while it is recomputed."""
        return self.activations - self.layers * (self.block - self.block_input) + self.block

    def total(self, checkpointing: bool | int) -> int:
        """checkpointing: True (every block), False, or how many blocks (model.gradient_checkpointing)."""
        k = self.layers if checkpointing is True else int(checkpointing)
        if not 0 <= k <= self.layers:
            raise ValueError(f"checkpointing {k} blocks: the model has {self.layers}")
        # Backward meets the LM head, then the L - k kept blocks (last first), then the k checkpointed
        # ones, each recomputed when reached, by which time the kept blocks' activations are freed.
        kept = self.activations - k * (self.block - self.block_input)  # k inputs + L - k whole blocks
        head = kept + self.lm_head
        kept_blocks = (kept + self.backward) if k < self.layers else 0
        recomputed = (kept - (self.layers - k) * self.block + self.block + self.backward) if k else 0
        return self.weights + self.lora_and_optimizer + max(head, kept_blocks, recomputed) + self.process + self.upcast

    def fewest_checkpointed(self, memory: float) -> int | None:
        """The fewest blocks to checkpoint for the step to fit `memory` bytes (None: not even all):
        each block left out skips its recomputation in backward."""
        return next((k for k in range(self.layers + 1) if self.total(k) <= memory), None)


def count_parameters(c: ModelConfig) -> int:
    h, f, q, kv = c.hidden_size, c.intermediate_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    per_layer = h * (q + 2 * kv) + q * h + 3 * h * f + 2 * h
    per_layer += (q + 2 * kv) * c.qkv_bias + h * c.attention_bias  # Qwen2's biases (all four: attention_bias)
    per_layer += 2 * c.head_dim * c.qk_norm + 2 * h * c.sandwich_norms  # Qwen3's q/k norms, Gemma-2's norms
    head = 0 if c.tie_word_embeddings else c.vocab_size * h
    return c.vocab_size * h + c.num_hidden_layers * per_layer + h + head


def count_lora_parameters(c: ModelConfig, r: int, targets=DEFAULT_TARGETS) -> int:
    h, f, q, kv = c.hidden_size, c.intermediate_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    shapes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
              "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}
    return c.num_hidden_layers * r * sum(sum(shapes[t]) for t in targets)


def activation_bytes_per_token_layer(c: ModelConfig, T: int, *, dtype: str, r: int, lora_dropout: float,
                                     attention_dropout: float, fused_attention: bool, padded: bool = False) -> float:
    """Bytes autograd keeps per token in one block (h hidden, f MLP width, q = heads·head_dim,
    kv = kv_heads·head_dim, r LoRA rank, T tokens); docs/scaling.md explains each term."""
    h, f, q, kv = c.hidden_size, c.intermediate_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    b = BYTES[dtype]
    kv_in = q if padded else kv  # with a mask, K/V reach the kernel expanded to all heads
    # attention: q, k, v, the output and its copy for o_proj, a log-sum-exp per head; SwiGLU: 4f; LoRA's
    # A outputs: 7r; the two RMSNorms: their fp32 input copy and their output
    total = (3 * q + 2 * kv_in + c.num_attention_heads + 4 * f + 7 * r) * b + 2 * h * (4 + b)
    if c.sandwich_norms:  # Gemma-2's norms after attention and MLP: their outputs go to the residual sum, unkept
        total += 2 * h * 4
    if lora_dropout > 0:  # FastLoRALinear keeps only the dropout mask: 1 byte an input element
        total += (5 * h + q + f) * 1
    if c.attn_logit_softcapping is not None:  # Gemma-2: the math path, never a fused kernel
        fused_attention = False
        total += c.num_attention_heads * T * (2 * b + 4)
    if attention_dropout > 0 and not fused_attention:  # a CPU drops probabilities on SDPA's math path
        total += c.num_attention_heads * T * 12
    return total


def plan(c: ModelConfig, *, stage: str, batch_size: int, max_length: int, dtype: str = "bfloat16",
         r: int = LoRASettings.r, lora_dropout: float = LoRASettings.dropout, attention_dropout: float | None = None,
         mask_prob: float | None = None,
         device: str = "cuda", padded: bool | None = None, chunk_size: int | None = None) -> Plan:
    """Memory estimate of one training step (bytes). attention_dropout None: SimCSE's 0.3, else 0.
    mask_prob None: the model family's MNTP rate (mntp.FAMILY_MASKING: LLaMA 0.2, Mistral 0.8).
    padded None: MNTP's packed blocks are not, contrastive batches (padded to the longest) are.
    chunk_size: GradCache's examples per pass (contrastive stages only)."""
    if stage not in SEQUENCES_PER_EXAMPLE:
        raise ValueError(f"unknown stage {stage!r}: choose one of {', '.join(SEQUENCES_PER_EXAMPLE)}")
    if chunk_size is not None and stage == "mntp":
        raise ValueError("--chunk-size is GradCache for the contrastive stages (simcse, supervised); "
                         "MNTP's loss is per token, so --grad-accum already splits its batch")
    cache = 0
    if chunk_size is not None and chunk_size < batch_size:
        cache = batch_size * SEQUENCES_PER_EXAMPLE[stage] * c.hidden_size * 4 * 2  # embeddings + their gradient
        batch_size = chunk_size  # activations: one chunk's
    tokens = batch_size * SEQUENCES_PER_EXAMPLE[stage] * max_length
    L = c.num_hidden_layers
    if attention_dropout is None:
        attention_dropout = SimCSESettings.attention_dropout if stage == "simcse" else 0.0
    if mask_prob is None:
        mask_prob = FAMILY_MASKING.get(c.model_type, FAMILY_MASKING["llama"]).prob
    if padded is None:
        padded = stage != "mntp"
    h, V = c.hidden_size, c.vocab_size
    upcast = device == "cpu" and dtype == "bfloat16" and not native_bf16("cpu")
    compute = "float32" if upcast else dtype  # precision.py: bf16 weights computed in fp32
    per = activation_bytes_per_token_layer(c, max_length, dtype=compute, r=r, lora_dropout=lora_dropout,
                                           attention_dropout=attention_dropout, fused_attention=device == "cuda",
                                           padded=padded)
    final_norm = tokens * h * 4  # the model's last RMSNorm keeps its fp32 input, outside every block
    head = 0
    if stage == "mntp":  # at the masked positions only (l2v never builds (B, T, V)): fp32 log-softmax + 2 grads
        head = int(mask_prob * tokens) * V * 4 * 3
    return Plan(weights=count_parameters(c) * BYTES[dtype], lora_and_optimizer=count_lora_parameters(c, r) * 16,
                activations=int(tokens * L * per) + final_norm + cache, lm_head=head,
                backward=tokens * max(2 * c.intermediate_size * BYTES[compute], 5 * h * 4), block=int(tokens * per),
                block_input=tokens * h * BYTES[compute], layers=L, process=PROCESS_BYTES_CPU if device == "cpu" else 0,
                upcast=4 * UPCAST_CHUNK if upcast else 0, compute_dtype=compute)


def format_plan(name: str, p: Plan, *, stage: str, batch_size: int, max_length: int, dtype: str,
                gpus_gb=(40, 80), chunk_size: int | None = None, r: int = LoRASettings.r,
                memory_gb: float | None = None) -> str:
    gib = 2**30
    rows = [("weights", p.weights), ("LoRA + AdamW (fp32)", p.lora_and_optimizer),
            ("activations", p.activations), ("activations, checkpointed", p.activations_checkpointed),
            ("backward, one block", p.backward), ("LM head (MNTP)", p.lm_head)]
    if p.process:  # CPU: compared with peak resident memory
        rows += [("process (Python, torch)", p.process)] + ([("fp32 block of weight rows", p.upcast)] if p.upcast else [])
    computed = f" computed in {p.compute_dtype} (no native bf16 here)" if p.compute_dtype not in ("", dtype) else ""
    lines = [f"{name}: {stage}, batch {batch_size} × {max_length} tokens, {dtype} weights{computed}, "
             f"LoRA r{r} on 7 projections" + (f", GradCache chunks of {chunk_size}" if chunk_size else "")]
    lines += [f"  {label:28} {value / gib:8.2f} GiB" for label, value in rows]
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if p.process else 0  # CPU: this machine's RAM
    for ckpt in (False, True):
        total = p.total(ckpt) / gib
        fits = ", ".join(f"{g} GB: {'fits' if total <= 0.92 * g else 'no'}" for g in gpus_gb)  # "80 GB" cards hold 80 GiB
        if ram:
            fits = f"this machine's {ram / gib:.1f} GiB of RAM: {'fits' if total * gib <= 0.9 * ram else 'no'}"
        lines.append(f"  {'total, ' + ('with' if ckpt else 'without') + ' checkpointing':28} {total:8.2f} GiB   ({fits})")
    if memory_gb is not None:  # the same 8% margin: checkpoint only as many blocks as this memory needs
        k = p.fewest_checkpointed(0.92 * memory_gb * gib)
        lines.append(f"  {memory_gb:g} GB: " + ("does not fit, even with every block checkpointed" if k is None else
                     f"checkpoint {k} of {p.layers} blocks (--checkpoint-layers {k}): {p.total(k) / gib:.2f} GiB; "
                     f"backward recomputes {k / p.layers:.0%} of what full checkpointing does"))
    if p.lm_head:
        lines.append("  (the LM head's backward and the blocks' come one after the other: the total holds the larger)")
    if p.process:
        lines.append("  (estimate of peak resident memory on this CPU)")
    else:
        lines.append("  (estimate; leave ~8% of a GPU's memory for the CUDA context and fragmentation)")
    return "\n".join(lines)
