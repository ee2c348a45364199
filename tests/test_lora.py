"""Issue 4: the hand-rolled LoRA against its definition and against peft, both file directions."""

import json
import shutil

import pytest
import torch
from conftest import FAMILIES, padded_batch
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

import l2v
from l2v.formats.peft import adapter_state, load_adapter, save_adapter
from l2v.lora import (
    FastLoRALinear,
    LoRALinear,
    apply_lora,
    dropout_keep_mask,
    lora_modules,
    lora_parameters,
    merge_lora,
    trainable_summary,
)

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


def randomize_b(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=g) * 0.1)


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_layer_definition(bias):
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 10, bias=bias)
    lora = LoRALinear(base, r=4, alpha=8, dropout=0.0)
    x = torch.randn(3, 12)
    assert torch.equal(lora(x), base(x))  # B = 0: exactly the base
    torch.nn.init.normal_(lora.lora_B.weight)
    want = x @ base.weight.T + 2.0 * (x @ lora.lora_A.weight.T @ lora.lora_B.weight.T)  # α/r = 2
    if bias:  # Qwen2: the bias stays, frozen
        want = want + base.bias
        assert lora.bias is base.bias and not lora.bias.requires_grad
    assert_close(lora(x), want, atol=1e-6, rtol=0)
    before = lora.weight.clone()
    out = lora(x)
    lora.merge()
    assert_close(lora(x), out, atol=1e-6, rtol=0)
    lora.unmerge()
    assert_close(lora.weight, before, atol=1e-6, rtol=0)


class KeepMaskDropout(torch.nn.Module):
    """Dropout with the fast path's mask (`dropout_keep_mask`): the plain LoRALinear, given this as
    its `dropout`, drops exactly what FastLoRALinear drops from the same RNG state."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        keep, p = dropout_keep_mask(x, self.p)
        return torch.where(keep, x, 0.0) / (1 - p)


@pytest.mark.parametrize("precision", ["fp32", "bf16-weights", "bf16-autocast"])
def test_fast_path_equals_the_plain_one(precision):
    """Training mode with dropout: FastLoRALinear (its `_LoRABranch`) and LoRALinear's plain lines,
    given the same mask, give the same output and the same gradients for x, A and B."""
    torch.manual_seed(0)
    dtype = torch.bfloat16 if precision == "bf16-weights" else torch.float32
    base = torch.nn.Linear(12, 10, bias=False).to(dtype)
    plain = LoRALinear(base, r=4, alpha=8, dropout=0.3).train()
    torch.nn.init.normal_(plain.lora_B.weight)
    fast = FastLoRALinear(base, r=4, alpha=8, dropout=0.3).train()
    fast.load_state_dict(plain.state_dict())
    x1 = torch.randn(2, 5, 12, dtype=dtype, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16-autocast"):
        torch.manual_seed(1)
        y1 = fast(x1)
        torch.manual_seed(1)  # the same mask, drawn as inside the branch
        plain.dropout = KeepMaskDropout(0.3)
        y2 = plain(x2)
    tol = dict(atol=1e-5, rtol=1e-5) if precision == "fp32" else dict(atol=2e-2, rtol=2e-2)
    assert y1.dtype == y2.dtype
    assert_close(y1, y2, **tol)
    g = torch.randn_like(y1)
    grads1 = torch.autograd.grad(y1, [x1, fast.lora_A.weight, fast.lora_B.weight], g)
    grads2 = torch.autograd.grad(y2, [x2, plain.lora_A.weight, plain.lora_B.weight], g)
    for a, b in zip(grads1, grads2):
        assert a.dtype == b.dtype
        assert_close(a, b, **tol)
    assert not torch.equal(fast(x1), fast(x1))  # two calls, two masks


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
def test_training_forward_draws_the_same_masks_without_autograd(fast):
    """GradCache (gradcache.py) replays a training-mode forward with autograd from the RNG state of
    one without: both paths must draw the same dropout masks either way."""
    layer = (FastLoRALinear if fast else LoRALinear)(torch.nn.Linear(12, 10), r=4, alpha=8, dropout=0.3).train()
    torch.nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(2, 5, 12)
    torch.manual_seed(1)
    with torch.no_grad():
        y1 = layer(x)
    torch.manual_seed(1)
    y2 = layer(x.requires_grad_())
    assert y2.requires_grad and torch.equal(y1, y2)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fast_and_plain_lora_train_alike(tiny_folder, dropout):
    """apply_lora(fast=True) against the plain layers over a few AdamW steps: identical without
    dropout (the fast path is then the plain one); with it, equal given the same masks."""
    folder = tiny_folder("llama-gqa")[0]
    ids = torch.randint(3, 100, (2, 9))
    states = {}
    for fast in (False, True):
        torch.manual_seed(0)  # the same A
        model = apply_lora(l2v.load_model(folder), r=4, alpha=8, dropout=dropout, fast=fast).train()
        assert {type(m) for m in lora_modules(model).values()} == {FastLoRALinear if fast else LoRALinear}
        if not fast and dropout:
            for m in lora_modules(model).values():
                m.dropout = KeepMaskDropout(dropout)
        opt = torch.optim.AdamW(lora_parameters(model), lr=1e-2)
        torch.manual_seed(1)  # the same masks
        for _ in range(3):
            loss = model.lm_head(model(ids)).logsumexp(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        states[fast] = adapter_state(model)
    for k in states[False]:
        if dropout:
            assert_close(states[True][k], states[False][k], atol=1e-5, rtol=1e-4)
        else:
            assert torch.equal(states[True][k], states[False][k]), k


@pytest.mark.parametrize("name", ["llama-gqa", "qwen2"])
def test_apply_lora_trains_only_lora_and_keeps_base(tiny_folder, name):
    model = apply_lora(l2v.load_model(tiny_folder(name)[0]), r=4, alpha=8)
    assert len(lora_modules(model)) == 3 * 7
    assert "trainable parameters" in trainable_summary(model)
    base = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    assert all(k.endswith((".weight", ".bias")) and "lora" not in k for k in base)  # HF names unchanged
    assert any(k.endswith(".bias") for k in base) == (name == "qwen2")  # Qwen2's biases kept (frozen below)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask = padded_batch([9, 5], T=9)
    model.train()
    model.lm_head(model(ids, mask)).logsumexp(-1).mean().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)
    assert all(p.grad is not None for p in lora_parameters(model))
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(base[k], after[k]) for k in base)


def test_lora_stays_fp32_over_bf16_base(tiny_folder, monkeypatch):
    monkeypatch.setenv("L2V_NATIVE_BF16", "1")  # bf16 arithmetic on any CPU (else the stream is fp32)
    model = apply_lora(l2v.load_model(tiny_folder("llama-gqa")[0], dtype=torch.bfloat16))
    assert all(p.dtype == torch.float32 for p in lora_parameters(model))
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    out = model(padded_batch([9], T=9)[0])
    assert out.dtype == torch.bfloat16


def peft_model(folder, r=4, alpha=8):
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(l2v.lora.DEFAULT_TARGETS),
                          init_lora_weights=False)
    return peft.get_peft_model(hf, cfg).eval()


def logits(model, ids, mask):
    with torch.no_grad():
        return model.lm_head(model(ids, mask))


@pytest.mark.parametrize("name", FAMILIES)
def test_l2v_adapter_loads_in_peft(tiny_folder, tmp_path, name):
    folder = tiny_folder(name)[0]
    model = apply_lora(l2v.load_model(folder), r=4, alpha=8, dropout=0.0)
    randomize_b(model)
    save_adapter(model, tmp_path / "adapter", base_model=str(folder))
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    theirs = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    ids, mask = padded_batch([9, 6], T=9)
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask).logits
    assert_close(logits(model.eval(), ids, mask)[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("layout", ["causal-lm", "inner-model"])
def test_peft_adapter_loads_in_l2v(tiny_folder, tmp_path, layout, name):
    folder = tiny_folder(name)[0]
    torch.manual_seed(0)
    theirs = peft_model(folder)
    theirs.save_pretrained(tmp_path / "adapter")
    ids, mask = padded_batch([9, 6], T=9)
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask).logits
    if layout == "inner-model":  # what the official LLM2Vec adapters on the hub look like
        file = tmp_path / "adapter" / "adapter_model.safetensors"
        tensors = load_file(file)
        assert all(k.startswith("base_model.model.model.layers.") for k in tensors)
        save_file({k.replace("base_model.model.model.", "base_model.model."): v for k, v in tensors.items()}, file)
    model = load_adapter(l2v.load_model(folder), tmp_path / "adapter").eval()
    assert_close(logits(model, ids, mask)[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=0)
    merge_lora(model)  # merged equals unmerged
    assert not lora_modules(model)
    assert_close(logits(model, ids, mask)[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=0)


def test_encoder_merges_adapters_in_order(tiny_encoder_folder, tmp_path):
    texts = ["The cat sat on the mat.", "A dog ran in the park."]
    adapters = []
    for i in range(2):
        m = apply_lora(l2v.load_model(tiny_encoder_folder), r=4, alpha=8, dropout=0.0)
        randomize_b(m, seed=i)
        save_adapter(m, tmp_path / f"a{i}")
        adapters.append(tmp_path / f"a{i}")
    got = l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=adapters).encode(texts)
    # by hand: W + Δ0 + Δ1
    model = l2v.load_model(tiny_encoder_folder, causal=False)
    for a in adapters:
        merge_lora(load_adapter(model, a))
    want = l2v.Encoder(model, l2v.Tokenizer(tiny_encoder_folder)).encode(texts)
    assert_close(torch.tensor(got), torch.tensor(want), atol=1e-6, rtol=0)
    plain = l2v.Encoder.from_pretrained(tiny_encoder_folder).encode(texts)
    assert not torch.allclose(torch.tensor(got), torch.tensor(plain), atol=1e-4)


def test_adapter_for_another_model_names_tensor_and_shapes(tiny_folder, tmp_path):
    model = apply_lora(l2v.load_model(tiny_folder("llama-gqa")[0]), r=4)
    save_adapter(model, tmp_path / "adapter")
    other = tmp_path / "other"
    shutil.copytree(tiny_folder("llama-mha")[0], other)  # same names, k/v projections twice as wide
    with pytest.raises(l2v.CheckpointError, match=r"shape mismatch for base_model\.model\.model\.layers\.0\."
                                                   r"self_attn\.k_proj\.lora_B\.weight: model expects \(48, 4\), "
                                                   r"adapter has \(24, 4\)"):
        load_adapter(l2v.load_model(other), tmp_path / "adapter")


def test_adapter_errors(tiny_folder, tmp_path):
    model = l2v.load_model(tiny_folder("llama-gqa")[0])
    with pytest.raises(FileNotFoundError, match="adapter folder not found"):
        load_adapter(model, tmp_path / "missing")
    save_adapter(apply_lora(l2v.load_model(tiny_folder("llama-gqa")[0]), r=4), tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    with pytest.raises(ValueError, match="use_dora"):
        load_adapter(model, tmp_path / "a")


def test_dropout_keep_mask_statistics():
    torch.manual_seed(0)
    x = torch.empty(400, 1001)  # an odd element count: the last 64-bit word is only partly used
    for p in (0.05, 0.3):
        keep, used = dropout_keep_mask(x, p)
        assert keep.shape == x.shape and keep.dtype == torch.bool and abs(used - p) < 1 / 65536
        assert abs(1 - keep.float().mean().item() - used) < 0.002  # 400k draws: 4+ standard deviations
        # Each 64-bit word feeds four neighbouring elements; a biased 16-bit lane (e.g. a sign bit
        # that random_()'s default range never sets) would show as one lane's rate off.
        lanes = keep.flatten()[: keep.numel() // 4 * 4].view(-1, 4).float().mean(0)  # (4,)
        assert (lanes - (1 - used)).abs().max() < 0.005, lanes  # 100k draws per lane: 4+ sd
    assert not torch.equal(dropout_keep_mask(x, 0.3)[0], dropout_keep_mask(x, 0.3)[0])


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
def test_training_step_under_bf16_autocast(tiny_folder, fast):
    """train() autocasts on CUDA (and on CPU when asked): the dropout branch must follow autocast's
    dtype in both passes and hand fp32 gradients to the fp32 A and B."""
    model = apply_lora(l2v.load_model(tiny_folder("llama-gqa")[0]), r=4, alpha=8, dropout=0.1, fast=fast).train()
    for name, p in model.named_parameters():
        if ".lora_B." in name:
            torch.nn.init.normal_(p, std=0.1)  # B ≠ 0: A's gradients are not zero
    ids = torch.randint(0, 101, (2, 9))
    grads = {}
    for autocast in (False, True):
        model.zero_grad()
        torch.manual_seed(0)  # the same dropout masks
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            loss = model.lm_head(model(ids)).float().logsumexp(-1).mean()
        loss.backward()
        grads[autocast] = torch.cat([p.grad.flatten() for p in lora_parameters(model)])
        assert all(p.grad.dtype == torch.float32 for p in lora_parameters(model))
    cosine = torch.nn.functional.cosine_similarity(grads[True], grads[False], dim=0)
    assert cosine > 0.99, cosine


def test_averaging_adapters_averages_their_updates(tiny_encoder_folder, tmp_path):
    """Issue 39: average_adapters(a, b) is one adapter whose merged update is the mean of a's and b's
    (scale·B·A each, ranks and alphas may differ), not the product of averaged A and B."""
    import l2v
    from l2v.formats.peft import average_adapters, merge_adapters, save_adapter

    folders = []
    for i, (r, alpha) in enumerate([(4, 8), (8, 4)]):
        model = l2v.load_model(tiny_encoder_folder, dtype=torch.float32)
        apply_lora(model, r=r, alpha=alpha)
        g = torch.Generator().manual_seed(i)
        for m in lora_modules(model).values():
            for w in (m.lora_A.weight, m.lora_B.weight):
                w.data.copy_(torch.randn(w.shape, generator=g) * 0.1)
        save_adapter(model, tmp_path / f"a{i}")
        folders.append(tmp_path / f"a{i}")
    base = l2v.load_model(tiny_encoder_folder, dtype=torch.float32).state_dict()
    merged = [merge_adapters(l2v.load_model(tiny_encoder_folder, dtype=torch.float32), [f]).state_dict()
              for f in folders]
    average_adapters(folders, tmp_path / "mean")
    got = merge_adapters(l2v.load_model(tiny_encoder_folder, dtype=torch.float32), [tmp_path / "mean"]).state_dict()
    naive_differs = False
    for k, w in base.items():
        want = w + ((merged[0][k] - w) + (merged[1][k] - w)) / 2
        torch.testing.assert_close(got[k], want, atol=1e-5, rtol=0, msg=f"{k}: not the mean update")
        naive_differs |= not torch.allclose(merged[0][k], merged[1][k])
    assert naive_differs  # the two adapters really differ
    with pytest.raises(ValueError, match="two or more"):
        average_adapters(folders[:1], tmp_path / "one")
