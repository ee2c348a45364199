"""Assignment 09 (extension) — GradCache: a contrastive batch larger than memory, exact gradient
(the library's l2v/gradcache.py; docs/scaling.md).

Grade with

    python -m pytest tutorials/assignments/test_a09_gradcache.py
"""

import torch


def gradcache_backward(encode, inputs: torch.Tensor, loss_fn, chunk_size: int) -> torch.Tensor:
    """Accumulate into encode's parameters (.grad) the exact gradient of loss_fn(encode(inputs)),
    with autograd holding the activations of at most `chunk_size` rows at a time. Return the loss
    (a scalar tensor, detached).

    encode: (n, ...) → (n, D), a module in training mode (it may use dropout); inputs (N, ...);
    loss_fn: (N, D) → a scalar that compares every row with every other (InfoNCE): it cannot be
    split into per-chunk losses. The loss depends on the parameters only through the embeddings E,
    so with g = ∂loss/∂E:
      1. chunk by chunk, under torch.no_grad(): save the RNG state (torch.get_rng_state()), then
         embed the chunk;
      2. E = the chunks' embeddings joined, as a leaf that requires grad; loss = loss_fn(E);
         g = torch.autograd.grad(loss, E);
      3. chunk by chunk: restore that chunk's RNG state (torch.set_rng_state) so dropout draws the
         same masks as in step 1, embed it again *with* autograd, and backpropagate its rows of g.
    """
    # TODO
    raise NotImplementedError("gradcache_backward")
