"""Issue 2 reference checks: l2v's Transformer against transformers, and the mask's properties."""

import pytest
import torch
from torch.testing import assert_close

import l2v
from l2v.model import build_attention_mask
from conftest import FAMILIES, TINY_CONFIGS, padded_batch

transformers = pytest.importorskip("transformers")

ATOL = 1e-5
BATCHES = {
    "right-padded": dict(lengths=[9, 6, 3], side="right"),
    "left-padded": dict(lengths=[9, 6, 3], side="left"),
    "batch-size-1": dict(lengths=[9], side="right"),
}


def hf_bidirectional_mask(attention_mask):
    """The 4-D additive mask that hides padding keys only — what LLM2Vec gives HF's eager attention."""
    B, T = attention_mask.shape
    m = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    return m.expand(B, 1, T, T)


def assert_close_at_real_tokens(ours, ref, mask, atol=ATOL):
    real = mask.bool()
    assert_close(ours[real], ref[real], atol=atol, rtol=0)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", TINY_CONFIGS)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_hidden_states_and_logits_equal_transformers(tiny_folder, name, batch, causal):
    folder, hf = tiny_folder(name)
    model = l2v.load_model(folder)
    ids, mask = padded_batch(T=9, **BATCHES[batch])
    with torch.no_grad():
        hidden, states = model(ids, mask, causal=causal, output_hidden_states=True)
        logits = model.lm_head(hidden)
        ref = hf(ids, attention_mask=mask if causal else hf_bidirectional_mask(mask), output_hidden_states=True)
    assert len(states) == len(ref.hidden_states) == model.config.num_hidden_layers + 1
    for ours, theirs in zip(states, ref.hidden_states):
        assert_close_at_real_tokens(ours, theirs, mask)
    assert_close_at_real_tokens(hidden, ref.hidden_states[-1], mask)
    assert_close_at_real_tokens(logits, ref.logits, mask)


def test_sharded_checkpoint_is_really_sharded(tiny_folder):
    folder, _ = tiny_folder("llama-sharded")
    assert (folder / "model.safetensors.index.json").is_file()
    assert len(list(folder.glob("model-*.safetensors"))) > 1


def test_tied_head_shares_the_embedding(tiny_folder):
    folder, _ = tiny_folder("llama-tied")
    model = l2v.load_model(folder)
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_state_dict_names_are_huggingface_names(tiny_folder):
    folder, hf = tiny_folder("llama-gqa")
    model = l2v.Transformer(l2v.ModelConfig.from_json(folder / "config.json"))
    model.load_state_dict(hf.state_dict(), strict=True)  # no renaming needed


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_sdpa_equals_plain_math(tiny_folder, name, batch, causal):
    model = l2v.load_model(tiny_folder(name)[0])
    ids, mask = padded_batch(T=9, **BATCHES[batch])
    with torch.no_grad():
        fast = model(ids, mask, causal=causal)
        model.attn_impl = "math"
        slow = model(ids, mask, causal=causal)
    assert_close(fast, slow, atol=ATOL, rtol=0)  # padding rows included: no NaN anywhere


def test_causal_future_tokens_cannot_change_the_past(tiny_folder):
    model = l2v.load_model(tiny_folder("llama-gqa")[0], causal=True)
    ids, _ = padded_batch([9], T=9)
    changed = ids.clone()
    j = 5
    changed[0, j] = (ids[0, j] + 1) % 101
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.equal(a[:, :j], b[:, :j])  # bit-identical before j
    assert not torch.allclose(a[:, j:], b[:, j:])


@pytest.mark.parametrize("B", [1, 2])
def test_bidirectional_future_tokens_change_position_zero(tiny_folder, B):
    """The official llm2vec's bug: at batch size 1 with no padding the kernel stayed causal."""
    model = l2v.load_model(tiny_folder("llama-gqa")[0], causal=False)
    ids, _ = padded_batch([9] * B, T=9)
    changed = ids.clone()
    changed[:, -1] = (ids[:, -1] + 1) % 101
    with torch.no_grad():
        for impl in ("sdpa", "math"):
            model.attn_impl = impl
            a, b = model(ids), model(changed)  # no attention_mask at all
            assert (a[:, 0] - b[:, 0]).abs().max() > 1e-4, impl


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_padded_batch_equals_each_sequence_alone(tiny_folder, side, causal):
    model = l2v.load_model(tiny_folder("mistral-window")[0])
    ids, mask = padded_batch([9, 6, 3], T=9, side=side)
    with torch.no_grad():
        batched = model(ids, mask, causal=causal)
        for b in range(3):
            real = mask[b].bool()
            alone = model(ids[b, real][None], causal=causal)[0]
            assert_close(batched[b, real], alone, atol=ATOL, rtol=0)


def test_causal_default_is_set_at_load_and_overridable(tiny_folder):
    folder, _ = tiny_folder("llama-gqa")
    ids, _ = padded_batch([9], T=9)
    causal_model, bi_model = l2v.load_model(folder), l2v.load_model(folder, causal=False)
    with torch.no_grad():
        assert torch.equal(causal_model(ids), bi_model(ids, causal=True))
        assert torch.equal(bi_model(ids), causal_model(ids, causal=False))
        assert not torch.allclose(causal_model(ids), bi_model(ids))


def test_mask_function():
    am = torch.tensor([[0, 1, 1, 1]])
    bi = build_attention_mask(am, causal=False)[0, 0]
    causal = build_attention_mask(am, causal=True)[0, 0]
    window = build_attention_mask(torch.ones(1, 4), causal=True, sliding_window=2)[0, 0]
    # Real queries see real keys only; a padding query also sees itself (never an empty softmax row).
    assert bi.tolist() == [[1, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]]
    assert causal.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1]]
    assert window.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]


def test_attention_dropout_only_in_training(tiny_folder):
    folder, _ = tiny_folder("llama-gqa")
    model = l2v.load_model(folder, causal=False)
    model.set_attention_dropout(0.3)
    assert all(layer.self_attn.dropout == 0.3 for layer in model.model.layers)
    ids, _ = padded_batch([9, 9], T=9)
    with torch.no_grad():
        assert torch.equal(model(ids), model(ids))  # eval: deterministic
        model.train()
        for impl in ("sdpa", "math"):
            model.attn_impl = impl
            assert not torch.allclose(model(ids), model(ids)), impl


def test_gradient_checkpointing_gives_the_same_gradients(tiny_folder):
    folder, _ = tiny_folder("llama-gqa")
    ids, mask = padded_batch([9, 5], T=9)
    grads = []
    for flag in (False, True, 1):  # 1: the first block only (Plan.fewest_checkpointed)
        model = l2v.load_model(folder).train()
        model.gradient_checkpointing = flag
        model(ids, mask).pow(2).mean().backward()
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad)
    assert_close(grads[0], grads[1], atol=1e-7, rtol=0)
    assert_close(grads[0], grads[2], atol=1e-7, rtol=0)


def test_dtype_and_meta_free_loading(tiny_folder):
    model = l2v.load_model(tiny_folder("llama-tied")[0], dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 and p.device.type == "cpu" for p in model.parameters())
    with torch.no_grad():
        assert torch.isfinite(model(padded_batch([9], T=9)[0]).float()).all()


@pytest.mark.parametrize("switch", ["window", "attention-cap", "final-cap"])
def test_gemma2_window_and_soft_caps_change_the_output(tiny_folder, switch):
    """The reference checks above would also pass if a switch did nothing on these inputs: show
    that each one moves the logits far beyond the tolerance (9 tokens, window 3)."""
    folder, hf = tiny_folder("gemma2-window")
    model = l2v.load_model(folder)
    ids, _ = padded_batch([9], T=9)
    if switch == "window":
        model.config.layer_types = ["full_attention"] * model.config.num_hidden_layers
    elif switch == "attention-cap":
        for layer in model.model.layers:
            layer.self_attn.softcap = None
    else:
        model.lm_head.softcap = None
    with torch.no_grad():
        moved = (model.lm_head(model(ids)) - hf(ids).logits).abs().max()
    assert moved > 100 * ATOL


def test_qwen_sliding_layers_follow_max_window_layers(tiny_folder):
    config = l2v.load_model(tiny_folder("qwen2-window")[0]).config
    assert config.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    assert l2v.load_model(tiny_folder("qwen2")[0]).config.sliding_window is None  # use_sliding_window false


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_bf16_equals_transformers_bit_for_bit(tiny_folder, name, causal, monkeypatch):
    """In bf16 every rounding step counts: Gemma's √D is rounded to bf16 before the multiply, its
    norms multiply in fp32 before the cast, LLaMA's cast first. With the written-out attention
    (transformers' eager arithmetic), l2v reproduces transformers exactly."""
    monkeypatch.setenv("L2V_NATIVE_BF16", "1")  # bf16 arithmetic, as transformers does, on any CPU
    folder, _ = tiny_folder(name)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16,
                                                           attn_implementation="eager").eval()
    model = l2v.load_model(folder, dtype=torch.bfloat16)
    model.attn_impl = "math"
    ids, mask = padded_batch([9, 6], T=9, side="left")
    with torch.no_grad():
        _, states = model(ids, mask, causal=causal, output_hidden_states=True)
        hf_mask = mask if causal else hf_bidirectional_mask(mask).to(torch.bfloat16)
        ref = hf(ids, attention_mask=hf_mask, output_hidden_states=True).hidden_states
    for ours, theirs in zip(states, ref):
        assert torch.equal(ours[mask.bool()], theirs[mask.bool()])
