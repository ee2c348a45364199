"""Gradient caching (GradCache; Gao et al., 2021): a contrastive batch of any size in the
activation memory of a small chunk. The fast / big-batch path beside the plain one.

The plain step (simcse.py, supervised.py) embeds the whole batch with autograd and calls
`contrastive_loss(...).backward()`: memory grows with the batch, and `--grad-accum` cannot help,
because InfoNCE compares every anchor with every candidate — micro-batches accumulated one after
another each see only their own negatives. But the loss depends on the model only through the
embeddings E (N, D), a few kB per text. So, with g = ∂loss/∂E:

    1. embed the batch chunk by chunk without autograd        memory: one chunk's forward
    2. the loss on all of E, and g, by ordinary autograd       memory: N × D
    3. per chunk: embed it again *with* autograd and           memory: one chunk's activations
       backpropagate g[chunk] into it

    ∂loss/∂θ = Σ_chunks (∂E_chunk/∂θ)ᵀ · g_chunk      (the chain rule: the batch's exact gradient)

Step 3 must compute the very embeddings of step 1, dropout included — SimCSE's two views *are*
two dropout draws. Each chunk's RNG state (CPU, and CUDA where the batch lives there) is saved
before step 1 and restored for step 3, so both passes draw the same masks: LoRA's (lora.py draws
them the same way with and without autograd for this reason) and the attention probabilities'.
The recomputed embeddings are compared with the cached ones, so a randomness the replay missed
is an error, not a silently wrong gradient.

Steps 1 and 3 are the forward and backward of one autograd Function, as in
torch.utils.checkpoint, and step 2 is ordinary autograd between them. So the training loop is
unchanged — `loss.backward()` runs step 3 — and so are gradient accumulation, torchrun (the
embeddings are all-gathered after step 1; the gather's backward hands each process its rows of g
before step 3 runs), per-block gradient checkpointing inside each chunk, and bf16 autocast
(step 3 re-enters the autocast state of step 1). The cost: one extra forward pass per step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .tokenizer import Batch


def embed_in_chunks(embed: Callable[[Batch], torch.Tensor], batch: Batch, rows: int) -> torch.Tensor:
    """embed(batch) → (N, D) computed `rows` sequences at a time, with GradCache's backward.
    With rows ≥ N it is the plain call: one chunk, the same computation and random draws."""
    n = batch.input_ids.shape[0]
    if rows < 1:
        raise ValueError(f"chunk size must be at least 1, not {rows}")
    if rows >= n:
        return embed(batch)
    fields = (batch.input_ids, batch.attention_mask, batch.pool_mask)
    chunks = [Batch(*(t[s : s + rows] for t in fields)) for s in range(0, n, rows)]
    # A leaf that needs a gradient, so that autograd records the Function and calls its backward.
    anchor = torch.empty(0, device=batch.input_ids.device, requires_grad=True)
    return _CachedEmbeddings.apply(anchor, embed, chunks)


class _CachedEmbeddings(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchor, embed, chunks):
        """Step 1 (autograd is off inside a Function's forward): each chunk's RNG state, then its embeddings."""
        device = chunks[0].input_ids.device
        ctx.embed, ctx.chunks = embed, chunks
        ctx.cuda = [device] if device.type == "cuda" else []
        ctx.autocast = (device.type, torch.get_autocast_dtype(device.type), torch.is_autocast_enabled(device.type))
        ctx.rng = []
        outs = []
        for chunk in chunks:
            ctx.rng.append((torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in ctx.cuda]))
            outs.append(embed(chunk))
        cached = torch.cat(outs)  # (N, D)
        ctx.save_for_backward(cached)
        return cached

    @staticmethod
    def backward(ctx, grad):
        """Step 3: grad = ∂loss/∂E (N, D) from step 2. Re-embed each chunk with autograd, under its
        step-1 RNG state, and backpropagate its rows of grad into the LoRA parameters."""
        (cached,) = ctx.saved_tensors
        device_type, dtype, enabled = ctx.autocast
        start = 0
        for k, (chunk, (cpu_state, cuda_states)) in enumerate(zip(ctx.chunks, ctx.rng)):
            with torch.random.fork_rng(devices=ctx.cuda), torch.enable_grad(), \
                    torch.autocast(device_type, dtype=dtype, enabled=enabled):
                torch.set_rng_state(cpu_state)
                for d, state in zip(ctx.cuda, cuda_states):
                    torch.cuda.set_rng_state(state, d)
                out = ctx.embed(chunk)  # (rows, D), this time with a graph
            end = start + out.shape[0]
            first = cached[start:end]
            if not torch.allclose(out.detach().float(), first.float(), rtol=1e-3, atol=1e-4):
                diff = (out.detach().float() - first.float()).abs().max().item()
                raise RuntimeError(f"GradCache: chunk {k}'s second pass differs from its first (max |Δ| {diff:.2e}); "
                                   "a source of randomness the RNG replay misses would make the gradient wrong")
            out.backward(grad[start:end])
            start = end
        return None, None, None
