"""Run settings (l2v/settings.py): one dataclass field per setting, and everything else follows from it —
the range check, the CLI flag with its preset defaults in --help, the override by keyword, the resume check."""

from dataclasses import dataclass, fields, replace

import pytest

from l2v import cli, settings as S
from l2v.checks import L2VError, Range
from l2v.settings import LoRASettings, MNTPSettings, PRESETS, SimCSESettings, resolve, setting, with_overrides


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
    assert seen["args"][4] == replace(PRESETS["simcse"]["paper"], chunk_size=8, dropout=0.1)


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
    assert may == {"eval_every", "save_every", "gradient_checkpointing"}
