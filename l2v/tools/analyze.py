"""The paper's analyses, small enough to run on a laptop.

- `layer_similarity`: one input through causal and through bidirectional attention; the cosine
  similarity of the two hidden states at every layer and position (the paper's appendix figure:
  LLaMA-2 drifts far from its causal states, Mistral stays close — hinting it saw bidirectional
  attention in training). Position 0 sees only itself under the causal mask and the whole text
  without it, so it changes most; the last position sees the same tokens either way and changes
  only through the changed states of the others.
- `analyze_pooling`: EOS (appended) vs last token vs mean vs weighted mean, causal and
  bidirectional, on a built-in suite (the paper: mean pooling wins, even for causal models).
"""

from __future__ import annotations

import torch

from ..formats.loading import load_model
from ..tokenizer import Tokenizer

DEFAULT_TEXT = ("The quick brown fox jumps over the lazy dog near the river bank, while the farmer watches from "
                "the old wooden fence and wonders whether it will rain before the harvest is in.")


@torch.no_grad()
def layer_similarity(model, input_ids: torch.Tensor) -> torch.Tensor:
    """→ (L + 1, T): cos(causal state, bidirectional state) per layer (0 = embeddings) and position."""
    _, causal = model(input_ids, causal=True, output_hidden_states=True)
    _, bidirectional = model(input_ids, causal=False, output_hidden_states=True)
    return torch.stack([torch.nn.functional.cosine_similarity(c[0].float(), b[0].float(), dim=-1)
                        for c, b in zip(causal, bidirectional)]).cpu()  # (L + 1, T)


def analyze_layers(model_dir, text: str = DEFAULT_TEXT, adapters=(), png=None, dtype=None, device=None) -> torch.Tensor:
    """Print the mean similarity per layer and, if matplotlib is installed, plot it (PNG)."""
    from ..formats.peft import merge_adapters

    model = load_model(model_dir, dtype=dtype, device=device)
    curves = {"base": model}
    if adapters:
        curves[" + ".join(str(a) for a in adapters)] = merge_adapters(load_model(model_dir, dtype=dtype, device=device),
                                                                      adapters)
    ids = torch.tensor([Tokenizer(model_dir).encode(text)], device=model.lm_head.weight.device)
    results = {name: layer_similarity(m, ids) for name, m in curves.items()}
    print(f"cosine(causal, bidirectional) per layer, mean over {ids.shape[1]} tokens (the last layer is after the norm)")
    print("layer  " + "  ".join(f"{name[:24]:>24}" for name in results))
    for layer in range(next(iter(results.values())).shape[0]):
        label = "emb" if layer == 0 else str(layer)
        print(f"{label:>5}  " + "  ".join(f"{sim[layer].mean().item():24.3f}" for sim in results.values()))
    if png:
        plot_layers(results, png)
    return next(iter(results.values()))


def plot_layers(results: dict[str, torch.Tensor], png):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: pip install 'l2v[plot]' for the PNG)")
        return
    fig, axes = plt.subplots(1, 1 + len(results), figsize=(5 + 4 * len(results), 4))
    for name, sim in results.items():
        axes[0].plot(range(sim.shape[0]), sim.mean(1).numpy(), marker="o", ms=3, label=name)
    axes[0].set(xlabel="layer (0 = embeddings)", ylabel="mean cosine", title="causal vs bidirectional states",
                ylim=(0, 1.02))
    axes[0].legend()
    for ax, (name, sim) in zip(axes[1:], results.items()):
        im = ax.imshow(sim.numpy(), aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis")
        ax.set(xlabel="token position", ylabel="layer", title=f"per position: {name[:30]}")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    print(f"wrote {png}")


def analyze_pooling(model_dir, *, adapters=(), suite: str = "l2v-mini", dtype=None, device=None) -> list[dict]:
    from ..evaluate import comparison_table, evaluate_model, evaluate_model_poolings

    poolings = ("eos", "last", "mean", "weighted_mean")
    print("evaluating Uni + " + ", ".join(poolings) + " (one causal pass serves them all)")
    causal = evaluate_model_poolings(model_dir, poolings, adapters=adapters, suite=suite, dtype=dtype, device=device)
    records = [{"row": f"Uni + {p.replace('_', ' ')}", **causal[p]} for p in poolings]
    for pooling in poolings:  # bidirectional: an appended EOS changes every state, so one pass each
        name = f"Bi + {pooling.replace('_', ' ')}"
        print(f"evaluating {name}")
        record = evaluate_model(model_dir, adapters=adapters, causal=False, pooling=pooling, suite=suite,
                                dtype=dtype, device=device)
        records.append({"row": name, **record})
    print(comparison_table(records))
    return records
