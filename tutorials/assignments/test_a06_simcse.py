"""Grader for assignment 06: the contrastive loss, the two views, alignment and uniformity."""

import math

import torch
import torch.nn.functional as F

import l2v
from grading import expect_close, expect_gradient, load, require

a06 = load("a06_simcse")
POINTS = {"test_info_nce": 5, "test_info_nce_gradient": 2, "test_two_views": 4, "test_alignment": 2, "test_uniformity": 2}


def views(seed=0, B=8, D=16, noise=4.0):
    """Two views hard enough that the loss is about 1 (noise 4 on unit-variance vectors): every
    mistake then moves the loss by a lot, not by rounding."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(B, D, generator=g)
    return a, a + noise * torch.randn(B, D, generator=g)


def test_info_nce():
    a, b = views()
    cos = F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)  # (B, B): row i = a[i] against every b[j]
    target = torch.arange(len(a))
    expected = F.cross_entropy(20 * cos, target)
    assert 0.5 < expected.item() < 2, "grader: the views must be hard (a loss near 1)"
    expect_close(torch.as_tensor(a06.info_nce(a, b, scale=20.0)), expected, "info_nce", mistakes={
        "the scores are COSINE similarities: normalise a and b to unit length before the dot products":
            F.cross_entropy(20 * a @ b.T, target),
        "multiply by scale (= 1/temperature), do not divide": F.cross_entropy(cos / 20, target),
        "the cosines are multiplied by scale before the softmax": F.cross_entropy(cos, target),
        "one direction only (a → b), as LLM2Vec: not the mean of a → b and b → a":
            (F.cross_entropy(20 * cos, target) + F.cross_entropy(20 * cos.T, target)) / 2,
        "row i holds a[i] against every b[j] (a → b): yours is b → a, the transposed score matrix":
            F.cross_entropy(20 * cos.T, target),
        "the loss is the MEAN cross-entropy over the B rows, not the sum": F.cross_entropy(20 * cos, target) * len(a),
        "the right answer of row i is column i (the diagonal): targets are arange(B)":
            F.cross_entropy(20 * cos, torch.zeros_like(target)),
    })
    expect_close(torch.as_tensor(a06.info_nce(a, b, scale=50.0)), F.cross_entropy(50 * cos, target),
                 "info_nce with scale=50 (use the argument, not a constant)")


def tiny_encoder():
    cfg = l2v.ModelConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, attention_dropout=0.3)
    torch.manual_seed(0)
    return l2v.Encoder(l2v.Transformer(cfg, causal=False), tokenizer=None)


def test_two_views():
    encoder = tiny_encoder()
    ids = torch.randint(3, 50, (4, 6))
    mask = torch.ones(4, 6, dtype=torch.long)
    mask[1, :2] = 0  # a left-padded row
    pool = mask.clone()
    pool[:, 2:4] = 0  # an instruction: attended to (attention_mask) but not pooled (pool_mask)
    pool[1, :2] = 0
    batch = l2v.Batch(ids, mask, pool)
    calls = []
    embed = encoder.embed
    encoder.embed = lambda b: calls.append(b.input_ids.shape) or embed(b)
    encoder.model.eval()
    with torch.no_grad():
        expected = embed(batch)
        pooled_all = embed(l2v.Batch(ids, mask, mask))  # pooled over every real token
        pool_attends = embed(l2v.Batch(ids, pool, mask))  # the two masks swapped
        a, b = a06.two_views(encoder, batch)
    require(len(calls) == 1, f"encoder.embed was called {len(calls)} times: stack the batch on itself and embed "
            "once (one forward pass; on a GPU that is the cheaper way to get two dropout samples)")
    require(tuple(calls[0]) == (8, 6), f"embed got input_ids of shape {tuple(calls[0])}; expected (2B, T) = (8, 6)")
    mistakes = {
        "pooled over attention_mask: the instruction tokens were pooled — stack pool_mask into the Batch's "
        "third field, it is what the encoder pools over": pooled_all,
        "attention_mask and pool_mask are swapped: Batch(input_ids, attention_mask, pool_mask), in that order":
            pool_attends,
    }
    require(isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape == expected.shape,
            f"two_views returns two (B, D) = {tuple(expected.shape)} tensors")
    interleaved = expected.repeat_interleave(2, 0)
    require(not torch.allclose(a, interleaved[:4], atol=1e-5), "rows i and B + i are the two views of sentence i: "
            "stack with torch.cat([x, x]) (the whole batch after itself), not repeat_interleave (each row twice)")
    expect_close(a, expected, "first view (eval mode: no dropout, so it equals a plain embedding)", mistakes=mistakes)
    expect_close(b, expected, "second view (eval mode)", mistakes={**mistakes,
        "the second view must be the same sentences in the same order (rows B … 2B − 1)": expected.roll(1, 0)})
    encoder.model.train()
    with torch.no_grad():
        a, b = a06.two_views(encoder, batch)
    require((a - b).abs().max() > 1e-4, "in training mode the two views should differ (dropout per row)")


def test_alignment():
    a, b = (F.normalize(v, dim=-1) for v in views(1))
    expected = torch.tensor(sum(((a[i] - b[i]) ** 2).sum().item() for i in range(len(a))) / len(a))
    expect_close(torch.as_tensor(a06.alignment(a, b)), expected, "alignment", mistakes={
        "alignment uses the SQUARED distance ‖a − b‖²": (a - b).norm(dim=-1).mean(),
        "the mean over pairs, not the sum": expected * len(a),
        "‖a[i] − b[i]‖² sums over the D dimensions, then the mean is over i (not over all N·D numbers)":
            (a - b).pow(2).mean(),
    })


def test_uniformity():
    x = F.normalize(views(2)[0], dim=-1)
    n = len(x)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    sq = {(i, j): ((x[i] - x[j]) ** 2).sum().item() for i, j in pairs}
    expected = torch.tensor(math.log(sum(math.exp(-2 * sq[p]) for p in pairs) / len(pairs)))
    full = torch.cdist(x, x).pow(2)
    expect_close(torch.as_tensor(a06.uniformity(x)), expected, "uniformity", mistakes={
        "only pairs of DIFFERENT vectors (i < j): the diagonal (distance 0, exp(0) = 1) must be left out":
            full.mul(-2).exp().mean().log(),
        "only pairs of DIFFERENT vectors (i < j): yours includes i = j (distance 0, exp(0) = 1)":
            torch.tensor(math.log((sum(math.exp(-2 * sq[p]) for p in pairs) + n) / (len(pairs) + n))),
        "the exponent is −2‖x_i − x_j‖² (t = 2)":
            torch.tensor(math.log(sum(math.exp(-sq[p]) for p in pairs) / len(pairs))),
        "log of the mean, not the mean of the logs": torch.tensor(sum(-2 * sq[p] for p in pairs) / len(pairs)),
    })


def test_info_nce_gradient():
    """The loss must train both views: its gradients with respect to a and b are the reference's."""
    a, b = (v.requires_grad_() for v in views(seed=3))
    reference = F.cross_entropy(20 * F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1), torch.arange(len(a)))
    expect_gradient(a06.info_nce(a, b, scale=20.0), {"a": a, "b": b}, reference, "info_nce")
