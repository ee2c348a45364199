"""Issue 26, items 2 and 6: every entry point uses the GPU when torch sees one (as transformers and
sentence-transformers do), `--device cpu` forces the CPU, and `--device cuda` where there is no GPU
is a one-line error. CUDA is stubbed here, so these run on any CPU machine."""

import sys
from pathlib import Path

import pytest
import torch

import l2v
from l2v.formats.loading import resolve_device
from l2v.tools.cli import main as cli


@pytest.fixture
def fake_gpus(monkeypatch):
    """torch sees two CUDA GPUs, the current one being GPU 1; nothing is ever placed on them."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.delenv("LOCAL_RANK", raising=False)


def test_the_default_is_the_gpu_when_there_is_one(fake_gpus, monkeypatch):
    assert resolve_device(None) == torch.device("cuda", 1)
    assert resolve_device("") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")  # --device cpu still forces the CPU
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "0")  # under torchrun each process keeps its own GPU
    assert resolve_device(None) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="'cuda:5': this machine has 2 CUDA GPU"):
        resolve_device("cuda:5")


def test_the_default_is_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")


def test_load_model_and_encoder_follow_the_default(fake_gpus, tiny_encoder_folder, monkeypatch):
    """With a GPU the API loads onto it without being told: safe_open is asked for cuda:1."""
    from l2v.formats import loading

    asked = []
    real = loading.safe_open

    def spy(file, framework, device="cpu"):
        if device == "cpu":  # reading the headers, before any tensor is placed
            return real(file, framework=framework)
        asked.append(device)
        raise RuntimeError("stop here: no real GPU")

    monkeypatch.setattr(loading, "safe_open", spy)
    for load in (lambda: l2v.load_model(tiny_encoder_folder), lambda: l2v.Encoder.from_pretrained(tiny_encoder_folder)):
        with pytest.raises(RuntimeError, match="stop here"):
            load()
    assert asked == ["cuda:1", "cuda:1"]
    monkeypatch.setattr(loading, "safe_open", real)
    assert l2v.load_model(tiny_encoder_folder, device="cpu").lm_head.weight.device.type == "cpu"


def test_demo_picks_the_cuda_budget_on_a_gpu(fake_gpus, monkeypatch, tmp_path):
    from l2v.tools import demo

    chosen = {}

    def stop(out, spec):  # the demo's first act after choosing its budget: claim the run folder
        chosen.update(out=str(out), **spec)
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "claim_folder", stop)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(model_dir=tmp_path)
    assert chosen["budget"] == "cuda" and chosen["out"].endswith("demo-cuda")
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(model_dir=tmp_path, device="cpu")
    assert chosen["budget"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where no GPU is usable")
@pytest.mark.parametrize("command", [
    ["encode", "--input", "x.txt", "--output", "e.npy"],
    ["mntp", "--out", "runs/x"],
])
def test_device_cuda_without_a_gpu_is_one_line(command, tiny_encoder_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text("a text\n")
    (tmp_path / "wiki.txt").write_text("Some text for the run.\n" * 50)
    args = [command[0], "--model", str(tiny_encoder_folder), *command[1:], "--device", "cuda"]
    if command[0] == "mntp":
        args += ["--data", str(tmp_path / "wiki.txt")]
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no CUDA GPU is usable here" in err and "--device cpu" in err
    assert cli(["encode", "--model", str(tiny_encoder_folder), "--input", "x.txt", "--output", "e.npy",
                "--device", "gpu"]) == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err


def test_gpu_benchmark_runs_anywhere_in_smoke_mode(tiny_encoder_folder, capsys):
    """scripts/bench_gpu.py (issue 26 item 4) on a tiny model, on this CPU: every row the GPU run
    prints, l2v's plan beside its measured peak, the peer measured in the same run."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    import bench_gpu

    bench_gpu.main(["--smoke", "--tokenizer", str(tiny_encoder_folder), "--device", "cpu", "--checkpoint-layers", "2"])
    out = capsys.readouterr().out
    assert "l2v and transformers share its tensors (min cosine of their hidden states 1.0000)" in out
    for row in ("encode 64 texts", "mntp 4×64, all blocks checkpointed", "mntp 4×64, 2 of 4 blocks checkpointed",
                "simcse 8×32, all blocks checkpointed", "simcse 8×32, 2 of 4 blocks checkpointed",
                "goal MNTP ≥ 1.4× at no more memory", "goal encode ≥ 1.3×"):
        assert row in out, row
    for line in out.splitlines():
        if "blocks checkpointed" in line and line.startswith(("mntp", "simcse")):
            of_plan = float(line.split()[-3])  # measured ÷ planned: never above the plan (test_plan.py: how close)
            assert 0.5 <= of_plan <= 1.0, line
