"""The reference solution of every assignment is the l2v library itself (one source of truth):
each name here points the grader at the l2v code a stub asks for. `pytest --solution` grades it."""

from types import SimpleNamespace

import torch
from torch.func import functional_call

from l2v import config, contrastive, gradcache, lora, mntp, model, pooling, simcse
from l2v.evaluate import metrics
from l2v.tools import analyze


def _block_config(D, F_, n_heads, n_kv_heads, eps):
    return config.ModelConfig(vocab_size=1, hidden_size=D, intermediate_size=F_, num_hidden_layers=1,
                              num_attention_heads=n_heads, num_key_value_heads=n_kv_heads, rms_norm_eps=eps)


def _rms_norm(x, weight, eps):
    return functional_call(model.RMSNorm(x.shape[-1], eps), {"weight": weight}, (x,))


def _swiglu(x, gate_w, up_w, down_w):
    mlp = model.MLP(_block_config(gate_w.shape[1], gate_w.shape[0], 1, 1, 1e-6))
    return functional_call(mlp, {"gate_proj.weight": gate_w, "up_proj.weight": up_w, "down_proj.weight": down_w}, (x,))


def _decoder_block(x, weights, n_heads, n_kv_heads, eps, mask, cos, sin):
    F_, D = weights["mlp.gate_proj.weight"].shape
    layer = model.DecoderLayer(_block_config(D, F_, n_heads, n_kv_heads, eps))
    layer.self_attn.impl = "math"
    return functional_call(layer, weights, (x, mask, cos, sin))


a01_llama_block = SimpleNamespace(rms_norm=_rms_norm, apply_rotary=model.apply_rotary,
                                  attention=model.math_attention, swiglu=_swiglu, decoder_block=_decoder_block)

_build_attention_mask = model.build_attention_mask  # bound now: the grader swaps the module's copy for yours
a02_bidirectional = SimpleNamespace(
    attention_mask=lambda padding_mask, causal: _build_attention_mask(padding_mask, causal=causal),
    layer_similarity=analyze.layer_similarity)

a04_lora = SimpleNamespace(LoRALinear=lambda base, r, alpha: lora.LoRALinear(base, r, alpha, dropout=0.0),
                           apply_lora=lambda m, r, alpha, targets=("q_proj", "v_proj"):
                           lora.apply_lora(m, r, alpha, dropout=0.0, targets=targets))


def _mask_tokens(ids, mask_token_id, special_ids, vocab_size, prob, generator):
    tokenizer = SimpleNamespace(mask_token_id=mask_token_id, special_ids=special_ids, vocab_size=vocab_size)
    return mntp.mask_tokens(ids, tokenizer, mntp.Masking(prob, 0.8, 0.1), generator)


class _GivenStates:
    """Stands in for a model that returns the given hidden states, so l2v's mntp_loss can score them."""

    def __init__(self, hidden, lm_head):
        self.hidden, self.lm_head = hidden, lm_head

    def __call__(self, input_ids, attention_mask=None):
        return self.hidden


def _mntp_loss(hidden, labels, lm_head):
    return mntp.mntp_loss(_GivenStates(hidden, lm_head), labels, labels)[0]


a05_mntp = SimpleNamespace(IGNORE=mntp.IGNORE, mask_tokens=_mask_tokens, mntp_loss=_mntp_loss)

a06_simcse = SimpleNamespace(info_nce=lambda a, b, scale=20.0: simcse.contrastive_loss(a, b, scale=scale),
                             two_views=simcse.two_views, alignment=simcse.alignment, uniformity=simcse.uniformity)


def _eos_pool(hidden, attention_mask, input_ids, eos_id):
    # The state at the last real token; the library names this "last" once EOS pooling appends the
    # EOS itself (issue 15), and "eos" before: either way the same computation on attention_mask.
    last_pool = getattr(pooling, "last_pool", None) or pooling.eos_pool
    T = attention_mask.shape[1]
    last = (torch.arange(T) * attention_mask).argmax(1)  # (B,)
    missing = (input_ids[torch.arange(len(last)), last] != eos_id).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"rows {missing} do not end with EOS")
    return last_pool(hidden, attention_mask)


a03_pooling = SimpleNamespace(
    # Tokenizer.pad builds the pool mask while padding; from a ready attention mask it is this line.
    text_mask=lambda attention_mask, n_prefix: ((attention_mask.cumsum(1) > n_prefix[:, None]) & attention_mask.bool())
    .to(attention_mask.dtype),
    mean_pool=pooling.mean_pool, weighted_mean_pool=pooling.weighted_mean_pool, eos_pool=_eos_pool)

a07_evaluation = SimpleNamespace(spearman=metrics.spearman,
                                 ndcg_at_10=lambda scores, qrels: metrics.ndcg_at_k(metrics.trec_ranking(scores), qrels, 10))



def _gradcache_backward(encode, inputs, loss_fn, chunk_size):
    """l2v's GradCache Function on plain tensors: each chunk stands in for a Batch (it needs input_ids)."""
    chunks = [SimpleNamespace(input_ids=inputs[s : s + chunk_size]) for s in range(0, len(inputs), chunk_size)]
    anchor = torch.empty(0, requires_grad=True)
    loss = loss_fn(gradcache._CachedEmbeddings.apply(anchor, lambda c: encode(c.input_ids), chunks))
    loss.backward()
    return loss.detach()


a09_gradcache = SimpleNamespace(gradcache_backward=_gradcache_backward)

a10_supervised = SimpleNamespace(
    supervised_loss=lambda q, p, n, scale=20.0: contrastive.contrastive_loss(q, p, n, scale=scale),
    training_texts=lambda triples, instruction: ([[instruction, t["query"]] for t in triples],
                                                 [t["positive"] for t in triples], [t["negative"] for t in triples]))

# The capstone's adapters, with l2v's own pieces behind them (what each stage calls when given none).
a11_capstone = SimpleNamespace(
    attention_mask=lambda padding_mask, causal, sliding_window=None: _build_attention_mask(
        padding_mask, causal=causal, sliding_window=sliding_window),
    lora_layer=lambda base, r, alpha, dropout: lora.LoRALinear(base, r, alpha, dropout),
    pool=pooling.mean_pool, mntp_loss=lambda m, input_ids, labels: mntp.mntp_loss(m, input_ids, labels),
    contrastive_loss=contrastive.contrastive_loss, metric=metrics.spearman)
