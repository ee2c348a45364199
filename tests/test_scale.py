"""Issue 14: what the 7B path needs, pinned on a CPU — one GPU per process, SDPA arguments its fast
kernels accept, the planner's masking rate, fp16 under bf16 autocast, no hidden states kept unless
asked, a dropout mask without an fp32 transient, and bf16 weights computed in fp32 where bf16 is
not native."""

import weakref

import pytest
import torch
import torch.nn.functional as F
from conftest import padded_batch
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

import l2v
from l2v.config import ModelConfig
from l2v.formats import loading
from l2v.lora import apply_lora, dropout_keep_mask, lora_parameters
from l2v.mntp import IGNORE, mntp_loss
from l2v.model import Transformer
from l2v.runtime import precision
from l2v.runtime.precision import UpcastLinear, native_bf16
from l2v.tools.plan import MODEL_SHAPES, plan

# ---------------------------------------------------------------- 1. "cuda" is this process's GPU


@pytest.fixture
def safe_open_devices(monkeypatch):
    """Record the device string load_model gives safe_open, and open on the CPU instead."""
    seen, real = [], loading.safe_open

    def recording(file, framework, device=None):
        if device is not None:  # header-only reads pass none
            seen.append(device)
        return real(file, framework=framework, device="cpu")

    monkeypatch.setattr(loading, "safe_open", recording)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # "cuda" is refused where torch sees no GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    return seen


def test_cuda_under_torchrun_means_cuda_local_rank(tiny_folder, safe_open_devices, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    l2v.load_model(tiny_folder("llama-sharded")[0], device="cuda")
    assert len(safe_open_devices) > 1 and set(safe_open_devices) == {"cuda:1"}


def test_cuda_without_torchrun_means_the_current_device(tiny_folder, safe_open_devices, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    l2v.load_model(tiny_folder("llama-gqa")[0], device="cuda")
    l2v.load_model(tiny_folder("llama-gqa")[0], device="cuda:2")  # an explicit index is kept
    assert safe_open_devices == ["cuda:3", "cuda:2"]


def test_lora_parameters_follow_the_base_weights():
    cfg = ModelConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2)
    with torch.device("meta"):
        model = Transformer(cfg)
    apply_lora(model, r=4)
    assert {p.device.type for p in lora_parameters(model)} == {"meta"}


def test_resume_maps_the_checkpoint_to_the_models_device(tiny_encoder_folder, tmp_path, monkeypatch):
    from conftest import TINY_CORPUS, mntp_run  # the MNTP resume harness

    from l2v.mntp import pack_blocks

    tk = l2v.Tokenizer(tiny_encoder_folder)
    blocks = pack_blocks(tk, TINY_CORPUS, 16)
    def stop_at_2(step, loss, model):  # interrupted after step 2 of 3: a checkpoint to resume from
        if step == 2:
            raise KeyboardInterrupt
        return loss

    with pytest.raises(KeyboardInterrupt):
        mntp_run(tiny_encoder_folder, tk, blocks, tmp_path, steps=3, save_every=1, loss_hook=stop_at_2)
    calls, real = [], torch.load

    def recording(*args, **kwargs):
        calls.append(kwargs.get("map_location"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording)
    mntp_run(tiny_encoder_folder, tk, blocks, tmp_path, steps=3, save_every=1, resume=True)
    assert calls == [torch.device("cpu")]


# ---------------------------------------------------------------- 2. SDPA gets what its fast kernels take


@pytest.fixture
def sdpa_calls(monkeypatch):
    calls, real = [], F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, enable_gqa=False, **kw):
        calls.append(dict(q_heads=q.shape[1], kv_heads=k.shape[1], mask=attn_mask is not None,
                          is_causal=is_causal, enable_gqa=enable_gqa))
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, enable_gqa=enable_gqa, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    return calls


@pytest.mark.parametrize("name", ["llama-mha", "llama-gqa", "mistral-window"])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_sdpa_arguments(tiny_folder, sdpa_calls, name, padded, causal):
    """No mask where none is needed (flash takes none); with a mask, K/V for every head and no
    enable_gqa (the memory-efficient kernel takes a mask but not GQA). Never the math kernel's only
    inputs: a mask together with grouped K/V."""
    model = l2v.load_model(tiny_folder(name)[0])
    ids, mask = padded_batch([9, 6, 3] if padded else [9, 9, 9], T=9)
    with torch.no_grad():
        model(ids, mask, causal=causal)
        if not padded:
            model(ids, causal=causal)  # attention_mask=None: the same rules
    H, KV = model.config.num_attention_heads, model.config.num_key_value_heads
    assert len(sdpa_calls) == model.config.num_hidden_layers * (1 if padded else 2)
    for call in sdpa_calls:
        assert call["is_causal"] is False  # causality is in the mask, never the kernel's default
        if causal or padded:
            assert call["mask"] and call["kv_heads"] == H and call["enable_gqa"] is False
        else:
            assert not call["mask"] and call["kv_heads"] == KV and call["enable_gqa"] is (KV != H)


def test_mntp_packed_blocks_pass_no_mask(tiny_folder, sdpa_calls):
    model = l2v.load_model(tiny_folder("llama-gqa")[0], causal=False)
    ids = torch.randint(3, 100, (2, 12))
    labels = torch.where(torch.rand(ids.shape) < 0.5, ids, torch.full_like(ids, IGNORE))
    mntp_loss(model, ids, labels)
    assert sdpa_calls and not any(c["mask"] for c in sdpa_calls) and all(c["enable_gqa"] for c in sdpa_calls)


# ---------------------------------------------------------------- 4. the planner's masking rate


def test_plan_uses_the_familys_masking_rate():
    tokens = 32 * 512
    for name, rate in (("mistral-7b", 0.8), ("llama-2-7b", 0.2)):
        cfg = ModelConfig(**MODEL_SHAPES[name])
        p = plan(cfg, stage="mntp", batch_size=32, max_length=512)
        assert p.lm_head == int(rate * tokens) * cfg.vocab_size * 4 * 3  # log-softmax + two gradients, fp32
    cfg = ModelConfig(**MODEL_SHAPES["mistral-7b"])
    assert plan(cfg, stage="mntp", batch_size=32, max_length=512, mask_prob=0.2).lm_head * 4 == pytest.approx(
        plan(cfg, stage="mntp", batch_size=32, max_length=512).lm_head, rel=1e-3)


# ---------------------------------------------------------------- 5. fp16 weights under bf16 autocast


def test_fp16_weights_under_bf16_autocast_warn(tiny_encoder_folder, tmp_path):
    model = l2v.load_model(tiny_encoder_folder, dtype=torch.float16)
    with pytest.warns(UserWarning, match="fp16 weights under bf16 autocast"):
        l2v.Encoder(model, l2v.Tokenizer(tiny_encoder_folder), autocast=True)
    from l2v.settings import LoRASettings, TrainSettings
    from l2v.train import Stage, train

    apply_lora(model, r=4)
    ids = torch.randint(3, 300, (2, 8))
    settings = TrainSettings(steps=1, batch_size=2, save_every=0, autocast=True, lora=LoRASettings(r=4))
    with pytest.warns(UserWarning, match="fp16 weights under bf16 autocast"):
        train(model, Stage(batch=lambda s, m: ids, loss=lambda m, b: (m(b).float().pow(2).mean(), {})), settings,
              tmp_path)


def test_bf16_weights_under_bf16_autocast_do_not_warn(tiny_encoder_folder, recwarn):
    l2v.Encoder(l2v.load_model(tiny_encoder_folder, dtype=torch.bfloat16), l2v.Tokenizer(tiny_encoder_folder),
                autocast=True)
    assert not [w for w in recwarn if "autocast" in str(w.message)]


# ---------------------------------------------------------------- 6. no needless memory


def test_hidden_states_are_not_kept_unless_asked(tiny_folder):
    """While block k runs, the output of block k − 2 must already be gone (it was kept in a list
    of all L + 1 states before)."""
    model = l2v.load_model(tiny_folder("llama-gqa")[0])
    outputs, alive_two_back = [], []

    def hook(module, args, output):
        alive_two_back.append(len(outputs) >= 2 and outputs[-2]() is not None)
        outputs.append(weakref.ref(output))

    for layer in model.model.layers:
        layer.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randint(3, 100, (2, 9)))
        assert alive_two_back == [False] * len(model.model.layers)
        outputs.clear()
        _, states = model(torch.randint(3, 100, (2, 9)), output_hidden_states=True)
    assert len(states) == model.config.num_hidden_layers + 1


class _Allocations(TorchDispatchMode):
    """Every tensor an op creates: (dtype, number of elements)."""

    def __init__(self):
        super().__init__()
        self.created = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.created.append((t.dtype, t.numel()))
        return out


def test_gpu_dropout_mask_has_no_fp32_transient():
    """The non-CPU path (checked on the meta device, which runs the same ops without memory)."""
    x = torch.empty(32, 512, 4096, dtype=torch.bfloat16, device="meta")
    with _Allocations() as record:
        keep, p = dropout_keep_mask(x, 0.05)
    assert keep.dtype == torch.bool and keep.shape == x.shape and p == 0.05
    assert not [c for c in record.created if c[0] != torch.bool and c[1] >= x.numel()]
    # the same ops on real memory: the keep rate is 1 − p
    cpu = torch.empty(x.shape[-1] * 64, dtype=torch.bool).bernoulli_(1 - p)
    assert abs(cpu.float().mean().item() - 0.95) < 0.01


# ---------------------------------------------------------------- bf16 weights without native bf16


def test_native_bf16_can_be_forced(monkeypatch):
    monkeypatch.setenv("L2V_NATIVE_BF16", "0")
    assert not native_bf16("cpu") and native_bf16("cuda")
    monkeypatch.setenv("L2V_NATIVE_BF16", "1")
    assert native_bf16("cpu")
    monkeypatch.setenv("L2V_NATIVE_BF16", "yes")
    with pytest.raises(ValueError, match="L2V_NATIVE_BF16 must be 0 or 1"):
        native_bf16("cpu")


def fp32_with_bf16_rounded_weights(folder):
    model = l2v.load_model(folder, dtype=torch.bfloat16)
    return model.float()  # the same numbers as the bf16 weights, computed in fp32 by plain nn.Linear


@pytest.mark.parametrize("name", ["llama-gqa", "llama-tied", "gemma2-window"])  # Gemma-2: soft-capped logits
def test_bf16_without_native_bf16_computes_in_fp32(tiny_folder, monkeypatch, capsys, name):
    folder = tiny_folder(name)[0]
    reference = fp32_with_bf16_rounded_weights(folder)
    monkeypatch.setenv("L2V_NATIVE_BF16", "0")
    model = l2v.load_model(folder, dtype=torch.bfloat16)
    assert "no native bf16" in capsys.readouterr().out
    assert model.lm_head.weight.dtype == torch.bfloat16 and model.lm_head.upcast
    ids, mask = padded_batch([9, 6, 3], T=9)
    with torch.no_grad():
        hidden = model(ids, mask, causal=False)
        assert hidden.dtype == torch.float32
        assert_close(hidden, reference(ids, mask, causal=False), atol=1e-5, rtol=0)
        # Gemma-2: the reference soft-caps its logits (here by ~0.08 at most), so the upcast head must too
        assert_close(model.lm_head(hidden), reference.lm_head(hidden), atol=1e-5, rtol=0)


def test_upcast_compute_keeps_parameter_names_and_objects():
    cfg = ModelConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=2, tie_word_embeddings=True, final_logit_softcapping=30.0)
    model = Transformer(cfg).bfloat16()
    before = dict(model.named_parameters())
    precision.upcast_compute(model)
    after = dict(model.named_parameters())
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    assert isinstance(model.model.layers[0].mlp.down_proj, UpcastLinear) and model.lm_head.upcast
    assert model.lm_head.softcap == 30.0


def test_bf16_without_native_bf16_trains_like_fp32(tiny_folder, monkeypatch):
    """LoRA gradients equal those of the fp32 model with the same (bf16-rounded) weights, and no
    fp32 copy of a weight is kept for the backward pass."""
    folder = tiny_folder("llama-gqa")[0]
    ids = torch.randint(3, 100, (2, 9))
    labels = torch.where(torch.arange(9) % 2 == 1, ids, torch.full_like(ids, IGNORE))

    def lora_grads(model):
        torch.manual_seed(0)
        apply_lora(model, r=4, dropout=0.0)
        with torch.no_grad():
            for p in lora_parameters(model):
                p.normal_(std=0.1)
        model.train()
        weight_shapes = {tuple(p.shape) for p in model.parameters() if p.dim() == 2 and not p.requires_grad}
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append((t.dtype, tuple(t.shape))) or t,
                                                      lambda t: t):
            loss, _ = mntp_loss(model, ids, labels)
        loss.backward()
        fp32_weights = [s for s in saved if s[0] == torch.float32 and s[1] in weight_shapes]
        return [p.grad for p in lora_parameters(model)], fp32_weights

    reference, _ = lora_grads(fp32_with_bf16_rounded_weights(folder))
    monkeypatch.setenv("L2V_NATIVE_BF16", "0")
    grads, fp32_weights = lora_grads(l2v.load_model(folder, dtype=torch.bfloat16))
    assert fp32_weights == []
    for a, b in zip(grads, reference):
        assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_merged_adapters_keep_the_fp32_compute(tiny_encoder_folder, tmp_path, monkeypatch):
    from l2v.formats.peft import save_adapter

    model = apply_lora(l2v.load_model(tiny_encoder_folder), r=4)
    save_adapter(model, tmp_path / "adapter")
    monkeypatch.setenv("L2V_NATIVE_BF16", "0")
    enc = l2v.Encoder.from_pretrained(tiny_encoder_folder, adapters=[tmp_path / "adapter"], dtype=torch.bfloat16)
    assert isinstance(enc.model.model.layers[0].self_attn.q_proj, UpcastLinear)
    assert enc.encode("The cat sat on the mat.").shape == (enc.dim,)


def test_plan_counts_fp32_activations_without_native_bf16(monkeypatch):
    cfg = ModelConfig(**MODEL_SHAPES["mistral-7b"])
    monkeypatch.setenv("L2V_NATIVE_BF16", "1")  # native, whatever this CPU or the environment says
    native = plan(cfg, stage="mntp", batch_size=2, max_length=128, device="cpu")
    monkeypatch.setenv("L2V_NATIVE_BF16", "0")
    emulated = plan(cfg, stage="mntp", batch_size=2, max_length=128, device="cpu")
    assert native.upcast == 0 and native.compute_dtype == "bfloat16"
    assert emulated.compute_dtype == "float32" and emulated.upcast == 4 * precision.UPCAST_CHUNK
    assert emulated.weights == native.weights
    assert 1.6 < emulated.activations / native.activations < 2  # 4 bytes, not 2 (dropout masks, fp32 norm inputs: same)
    assert precision.NATIVE_BF16_ENV == "L2V_NATIVE_BF16"


def test_blockwise_upcast_equals_an_fp32_linear(monkeypatch):
    monkeypatch.setattr(precision, "UPCAST_CHUNK", 48 * 7)  # blocks of 7 rows, the last one short
    w = torch.randn(96, 48).bfloat16()
    x = torch.randn(2, 5, 48, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    g = torch.randn(2, 5, 96)
    y = precision.upcast_linear(x, w)
    y.backward(g)
    y_ref = F.linear(x_ref, w.float())
    y_ref.backward(g)
    assert y.dtype == torch.float32
    assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    w_trainable = w.float().bfloat16().requires_grad_()  # a trainable bf16 weight gets its gradient too
    precision.upcast_linear(x.detach(), w_trainable).backward(g)
    assert w_trainable.grad.dtype == torch.bfloat16
    assert_close(w_trainable.grad.float(), (g.reshape(-1, 96).T @ x.detach().reshape(-1, 48)), atol=0.05, rtol=0.01)
