"""The two learned pieces of MTEB's protocols, by hand: logistic regression (classification) and
k-means (clustering). scikit-learn is the reference in the tests, never a dependency."""

from __future__ import annotations

import numpy as np
import torch


def fit_logistic_regression(X, y, C: float = 1.0, max_iter: int = 100):
    """L2-regularised logistic regression fitted with L-BFGS, as scikit-learn's defaults:
    minimise Σᵢ cross-entropy + ‖W‖² / (2C), the intercept not penalised. Two classes use one
    weight vector (binary logistic), more use one per class (multinomial softmax).
    → predict(X) function."""
    classes, y_idx = np.unique(np.asarray(y), return_inverse=True)
    X = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    target = torch.as_tensor(y_idx)
    outputs = 1 if len(classes) == 2 else len(classes)
    W = torch.zeros(X.shape[1], outputs, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(outputs, dtype=torch.float64, requires_grad=True)

    def objective():
        logits = X @ W + b  # (N, 1) or (N, K)
        if outputs == 1:
            data = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target.double(), reduction="sum")
        else:
            data = torch.nn.functional.cross_entropy(logits, target, reduction="sum")
        return data + W.pow(2).sum() / (2 * C)

    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=max_iter, tolerance_grad=1e-4, tolerance_change=1e-9,
                            history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    opt.step(closure)
    W_, b_ = W.detach(), b.detach()

    def predict(X_new):
        logits = torch.as_tensor(np.asarray(X_new), dtype=torch.float64) @ W_ + b_
        idx = (logits[:, 0] > 0).long() if outputs == 1 else logits.argmax(-1)
        return classes[idx.numpy()]

    return predict


def kmeans(X, k: int, n_init: int = 10, max_iter: int = 300, seed: int = 42) -> np.ndarray:
    """Lloyd's algorithm from k-means++ seeds, the best of n_init runs by inertia. → cluster ids."""
    X = np.asarray(X, np.float64)
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        centers = _kmeans_plus_plus(X, k, rng)
        for _ in range(max_iter):
            d = ((X[:, None, :] - centers[None]) ** 2).sum(-1)  # (N, k) squared distances
            assign = d.argmin(1)
            new = np.stack([X[assign == j].mean(0) if (assign == j).any() else centers[j] for j in range(k)])
            if np.allclose(new, centers):
                break
            centers = new
        inertia = d[np.arange(len(X)), assign].sum()
        if inertia < best_inertia:
            best, best_inertia = assign, inertia
    return best


def _kmeans_plus_plus(X, k, rng) -> np.ndarray:
    """Each next seed drawn with probability ∝ squared distance to the nearest seed so far."""
    centers = [X[rng.integers(len(X))]]
    for _ in range(1, k):
        d = np.min(((X[:, None, :] - np.stack(centers)[None]) ** 2).sum(-1), axis=1)
        centers.append(X[rng.choice(len(X), p=d / d.sum())] if d.sum() > 0 else X[rng.integers(len(X))])
    return np.stack(centers)
