"""A worked solution of assignment 09, written from the stubs' docstrings alone."""

import torch


def gradcache_backward(encode, inputs, loss_fn, chunk_size):
    chunks = list(inputs.split(chunk_size))
    states, cache = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(torch.get_rng_state())
            cache.append(encode(chunk))
    E = torch.cat(cache).requires_grad_()
    loss = loss_fn(E)
    (g,) = torch.autograd.grad(loss, E)
    start = 0
    for chunk, state in zip(chunks, states):
        torch.set_rng_state(state)
        out = encode(chunk)
        out.backward(g[start : start + len(chunk)])
        start += len(chunk)
    return loss.detach()
