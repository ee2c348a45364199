"""Grader for assignment 09: GradCache's gradient against the whole batch's, dropout included, and
only one chunk at a time under autograd."""

import torch
import torch.nn.functional as F

from grading import expect_close, load, require

a09 = load("a09_gradcache")
POINTS = {"test_gradient_equals_the_whole_batch": 6, "test_dropout_is_replayed": 4, "test_one_chunk_at_a_time": 3,
          "test_returns_the_loss": 1}
B, D_IN, D = 6, 12, 8  # 6 anchors and their 6 positives: 12 rows


def info_nce(E):
    """The batch's loss: rows 0..B−1 anchors, B..2B−1 their positives; every row meets every other."""
    a, b = F.normalize(E[:B], dim=-1), F.normalize(E[B:], dim=-1)
    return F.cross_entropy(20 * a @ b.T, torch.arange(B))


class Encoder(torch.nn.Module):
    def __init__(self, dropout=0.0):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(D_IN, 16), torch.nn.Tanh(), torch.nn.Dropout(dropout),
                                       torch.nn.Linear(16, D))
        self.calls = []  # (rows, autograd on?) of every call

    def forward(self, x):
        self.calls.append((x.shape[0], torch.is_grad_enabled()))
        return self.net(x)


def inputs():
    return torch.randn(2 * B, D_IN, generator=torch.Generator().manual_seed(1))


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def whole_batch(dropout, chunk_size):
    """The reference: the same chunks, in the same order (so the same dropout draws), all under
    autograd at once, and one backward — what GradCache must equal, in a fraction of the memory."""
    model = Encoder(dropout).train()
    torch.manual_seed(5)
    x = inputs()
    loss = info_nce(torch.cat([model(x[s:s + chunk_size]) for s in range(0, len(x), chunk_size)]))
    loss.backward()
    return grads(model), loss.detach()


def cached(dropout, chunk_size):
    model = Encoder(dropout).train()
    torch.manual_seed(5)
    loss = a09.gradcache_backward(model, inputs(), info_nce, chunk_size)
    require(all(p.grad is not None for p in model.parameters()),
            "no gradient reached the parameters: backpropagate each chunk's rows of g (out.backward(g[rows]))")
    return grads(model), loss, model


def test_gradient_equals_the_whole_batch():
    for chunk_size in (4, 5, 12):  # even chunks, a short last one, one chunk
        want, _ = whole_batch(0.0, chunk_size)
        got, _, _ = cached(0.0, chunk_size)
        expect_close(got, want, f"the gradient with chunks of {chunk_size}", mistakes={
            "the gradient is twice the batch's: backpropagate g once per chunk (is the loss also backpropagated?)": 2 * want,
        })


def test_dropout_is_replayed():
    want, _ = whole_batch(0.3, 4)
    got, _, _ = cached(0.3, 4)
    require(not torch.allclose(got, whole_batch(0.0, 4)[0]), "grader: dropout must matter here")
    try:
        expect_close(got, want, "the gradient with dropout (chunks of 4)")
    except AssertionError as e:
        raise AssertionError(f"{e} — the second pass must draw the first pass's dropout masks: save "
                             "torch.get_rng_state() before each chunk's first pass and restore it "
                             "(torch.set_rng_state) before its second") from None


def test_one_chunk_at_a_time():
    _, _, model = cached(0.0, 4)
    with_grad = [rows for rows, grad in model.calls if grad]
    without = [rows for rows, grad in model.calls if not grad]
    require(without and sum(without) == 2 * B,
            "step 1 embeds every chunk once under torch.no_grad() (the cache): it did not")
    require(with_grad and max(with_grad) <= 4 and sum(with_grad) == 2 * B,
            f"autograd saw {max(with_grad, default=0)} rows at once: only one chunk (≤ 4 rows) may go through "
            f"encode with autograd on — that is the memory GradCache saves")


def test_returns_the_loss():
    _, want = whole_batch(0.0, 4)
    _, got, _ = cached(0.0, 4)
    require(isinstance(got, torch.Tensor), f"return the loss as a tensor, not {type(got).__name__}")
    expect_close(got.detach(), want, "the returned loss")
