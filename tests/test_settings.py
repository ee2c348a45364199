"""Run settings (l2v/settings.py): one dataclass field per setting, and everything else follows from it —
the range check, the CLI flag with its preset defaults in --help, the override by keyword, the resume check."""

from dataclasses import dataclass, fields, replace

import pytest

from l2v import settings as S
from l2v.runtime.checks import L2VError, Range
from l2v.settings import PRESETS, LoRASettings, MNTPSettings, SimCSESettings, resolve, setting, with_overrides
from l2v.tools import cli


def flags_of(stage: str, capsys) -> str:
    with pytest.raises(SystemExit):
        cli.main([stage, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("stage", ["mntp", "simcse", "supervised"])
def test_every_setting_has_a_flag_with_its_defaults(stage, capsys):
    text = flags_of(stage, capsys)
    cpu, paper = PRESETS[stage]["cpu"], PRESETS[stage]["paper"]
    for f in fields(cpu):
        if f.name == "lora":
            for g in fields(LoRASettings):
                assert f"--lora-{g.name}" in text
            continue
        assert f"--{f.name.replace('_', '-')}" in text, f.name
    assert f"cpu: {cpu.steps}" in text and f"paper: {paper.steps}" in text  # the presets' values, shown


def capture_run(monkeypatch, module, name):
    seen = {}
    monkeypatch.setattr(module, name, lambda *args, **kw: seen.update(args=args, kw=kw))
    return seen


def test_cli_builds_the_settings_once(monkeypatch):
    from l2v import mntp, simcse

    seen = capture_run(monkeypatch, mntp, "run_mntp")
    assert cli.main(["mntp", "--model", "m", "--out", "o", "--steps", "3", "--lora-r", "4", "--mask-prob", "0.5",
                     "--autocast"]) is None
    expected = replace(PRESETS["mntp"]["cpu"], steps=3, mask_prob=0.5, autocast=True, lora=LoRASettings(r=4))
    assert seen["args"] == ("m", "wiki", "o", expected)
    seen = capture_run(monkeypatch, simcse, "run_simcse")
    cli.main(["simcse", "--model", "m", "--out", "o", "--preset", "paper", "--chunk-size", "8", "--dropout", "0.1"])
    assert seen["args"][4] == replace(PRESETS["simcse"]["paper"], chunk_size=8, attention_dropout=0.1)


def test_a_new_setting_is_one_field(monkeypatch, capsys):
    """What adding a setting takes: the field (here on a subclass) and the code that reads it. The flag,
    its help, its range check and its way into the settings object come from the field."""
    @dataclass(frozen=True)
    class Extended(MNTPSettings):
        label_smoothing: float = setting(0.0, "label smoothing of the MNTP loss", Range(float, 0.0, 1.0))

    monkeypatch.setitem(PRESETS, "mntp", {name: Extended(**{f.name: getattr(s, f.name) for f in fields(s)})
                                          for name, s in PRESETS["mntp"].items()})
    assert "--label-smoothing" in flags_of("mntp", capsys)
    from l2v import mntp

    seen = capture_run(monkeypatch, mntp, "run_mntp")
    cli.main(["mntp", "--model", "m", "--out", "o", "--label-smoothing", "0.1"])
    assert seen["args"][3].label_smoothing == 0.1
    with pytest.raises(SystemExit):
        cli.main(["mntp", "--model", "m", "--out", "o", "--label-smoothing", "2"])
    assert "--label-smoothing: must be a number ≥ 0.0 and ≤ 1.0, got 2" in capsys.readouterr().err


def test_overrides_by_flat_name():
    s = with_overrides(PRESETS["simcse"]["cpu"], lr=1e-3, lora_r=8, chunk_size=None)
    assert (s.lr, s.lora.r, s.lora.alpha, s.chunk_size) == (1e-3, 8, 32.0, None)
    assert resolve("mntp", preset="paper", steps=7).max_length == PRESETS["mntp"]["paper"].max_length
    with pytest.raises(TypeError, match="no setting 'mask_prob'"):
        with_overrides(PRESETS["simcse"]["cpu"], mask_prob=0.3)
    with pytest.raises(L2VError, match="unknown preset 'huge'"):
        resolve("mntp", preset="huge")


def test_ranges_are_checked_when_made():
    with pytest.raises(L2VError, match="^lora_r must be an integer ≥ 1, got 0"):
        with_overrides(PRESETS["mntp"]["cpu"], lora_r=0)
    with pytest.raises(L2VError, match="^steps must be an integer ≥ 1, got 0"):
        MNTPSettings(steps=0)
    with pytest.raises(L2VError, match="^mask_prob must be a number > 0.0 and ≤ 1.0"):
        MNTPSettings(mask_prob=0.0)
    with pytest.raises(L2VError, match="--batch-size must be at least 2"):
        SimCSESettings(batch_size=1)


def test_resume_may_change_only_what_changes_nothing():
    may = {f.name for f in fields(S.TrainSettings) if f.metadata.get("resume_may_change")}
    assert may == {"eval_every", "save_every", "gradient_checkpointing", "checkpoint_layers"}


def test_a_nested_settings_object_and_the_wrong_stage():
    s = with_overrides(PRESETS["mntp"]["cpu"], lora=LoRASettings(r=8))
    assert s.lora == LoRASettings(r=8)
    with pytest.raises(L2VError, match="the mntp stage takes MNTPSettings, not SimCSESettings"):
        resolve("mntp", SimCSESettings())


def test_integers_are_integers():
    with pytest.raises(L2VError, match="^steps must be an integer ≥ 1, got 10.0"):
        MNTPSettings(steps=10.0)
    with pytest.raises(L2VError, match="^lora_r must be an integer ≥ 1, got 16.0"):
        LoRASettings(r=16.0)
    assert type(LoRASettings().alpha) is int  # adapter_config.json says 32, as peft writes it


def test_checkpoints_from_before_settings_py_are_still_checked():
    """Checkpoints written before settings.py kept the stage's settings apart (`settings`), with other
    names; --resume compares them all the same."""
    from l2v.runtime.checkpoints import check_same_settings as _check_same_settings

    settings = replace(PRESETS["simcse"]["cpu"], lora=LoRASettings(r=4))
    old = {"config": {"steps": 40, "batch_size": 16, "lr": 3e-4, "autocast_bf16": None, "save_every": 20},
           "settings": {"max_length": 64, "dropout": 0.3, "data": "wiki", "adapter": None, "base_model": "m",
                        "lora": {"r": 4, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj"]}}}
    inputs = {"data": "wiki", "adapter": None, "base_model": "m"}
    _check_same_settings("ckpt", old, settings, inputs)  # the same run: fine
    for change, named in ((dict(max_length=128), "max_length"), (dict(attention_dropout=0.1), "attention_dropout"),
                          (dict(lora=LoRASettings(r=8)), "lora"), (dict(autocast=True), "autocast")):
        with pytest.raises(L2VError, match=f"settings differ from the checkpoint in ckpt \\({named}: checkpoint"):
            _check_same_settings("ckpt", old, replace(settings, **change), inputs)
    with pytest.raises(L2VError, match="data: checkpoint 'wiki', now 'other.txt'"):
        _check_same_settings("ckpt", old, settings, {**inputs, "data": "other.txt"})


def test_the_family_masking_rate_is_written_down(tiny_encoder_folder, tmp_path, capsys):
    """Without --mask-prob the run records the rate it used (LLaMA's 0.2), so resuming with
    --mask-prob 0.2 — the same computation — is not refused, and 0.5 is."""
    import json

    text = tmp_path / "t.txt"
    text.write_text("\n".join(f"Sentence number {i} is here, with a few more words in it." for i in range(200)) + "\n")
    args = ["mntp", "--model", str(tiny_encoder_folder), "--data", str(text), "--out", str(tmp_path / "o"),
            "--steps", "2", "--max-length", "16", "--batch-size", "2", "--save-every", "1"]
    assert cli.main(args) is None
    import torch

    state = torch.load(tmp_path / "o" / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["config"]["mask_prob"] == 0.2
    assert cli.main(args + ["--mask-prob", "0.2", "--resume", "--steps", "2"]) is None
    assert cli.main(args + ["--mask-prob", "0.5", "--resume"]) == 2
    assert "mask_prob: checkpoint 0.2, now 0.5" in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "adapter_config.json").read_text())["lora_alpha"] == 32


def test_lora_on_the_model_must_be_the_settings_lora(tiny_encoder_folder, tmp_path):
    import l2v
    from l2v.lora import apply_lora
    from l2v.settings import TrainSettings
    from l2v.train import Stage, train

    model = apply_lora(l2v.load_model(tiny_encoder_folder), r=4)
    with pytest.raises(L2VError, match="the model carries LoRA r=4, alpha=32, dropout=0.05, but settings.lora is"):
        train(model, Stage(batch=None, loss=None), TrainSettings(steps=1), tmp_path / "o")


def test_simcse_data_errors_come_before_loading(tmp_path):
    from l2v.simcse import run_simcse

    few = tmp_path / "few.txt"
    few.write_text("one two three four five\nsix seven eight nine ten\n")
    with pytest.raises(L2VError, match="has 2 distinct sentences, fewer than the batch size 16"):
        run_simcse(tmp_path / "no-model-here", None, few, tmp_path / "o")  # the data is read first
