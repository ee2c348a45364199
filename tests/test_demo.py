"""Issue 7: the demo's orchestration (on a tiny model, smoke budget) and the layer analysis."""

import json

import pytest
import torch

import l2v
from l2v.analyze import analyze_layers, layer_similarity
from l2v.evaluate import suite_folder
from l2v.fetch import wiki_path


def test_layer_similarity(tiny_folder, tmp_path, capsys):
    folder, _ = tiny_folder("llama-gqa")
    model = l2v.load_model(folder)
    ids = torch.randint(3, 101, (1, 9))
    sim = layer_similarity(model, ids)
    assert sim.shape == (4, 9)
    assert torch.allclose(sim[0], torch.ones(9))  # embeddings: attention not yet involved
    assert sim[1, -1] > 0.9999  # layer 1, last token: it sees the same tokens either way
    assert sim[1, 0] < 0.999  # position 0 sees the whole text only when bidirectional


def test_analyze_layers_plot(tiny_encoder_folder, tmp_path, capsys):
    sim = analyze_layers(tiny_encoder_folder, "The cat sat on the mat.", png=tmp_path / "layers.png")
    assert sim.shape[0] == 4
    assert (tmp_path / "layers.png").stat().st_size > 10_000
    assert "mean over" in capsys.readouterr().out


@pytest.mark.skipif(not (suite_folder(quick=True) / "DONE").is_file() or not wiki_path().is_file(),
                    reason="run `l2v fetch l2v-mini` and `l2v fetch wiki` first")
def test_demo_smoke_run_and_reuse(tiny_encoder_folder, tmp_path, capsys):
    from l2v.demo import ROWS, run_demo

    summary = run_demo(tmp_path / "demo", model_dir=tiny_encoder_folder, budget="smoke")
    assert [r["row"] for r in summary["rows"]] == [name for name, *_ in ROWS]
    for sub in ("mntp", "simcse", "simcse-only"):
        assert (tmp_path / "demo" / sub / "adapter_model.safetensors").is_file()
    assert (tmp_path / "demo" / "results.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert saved["rows"][5]["adapters"][-1].endswith("simcse") and saved["rows"][0]["pooling"] == "eos"
    assert saved["rows"][0]["appends_eos"] and saved["rows"][1]["pooling"] == "last"
    out = capsys.readouterr().out
    assert "Bi + MNTP + SimCSE" in out and "Avg" in out
    # The three untrained causal rows came from one pass; every ordering has its interval.
    assert "Uni + EOS, Uni + last token, Uni + mean on l2v-mini-quick (one causal pass)" in out
    assert saved["rows"][0]["shared_pass"] == ["eos", "last", "mean"] and saved["rows"][3]["shared_pass"] is None
    assert len(saved["orderings"]) == 5 and all(c["low"] <= c["diff"] <= c["high"] for c in saved["orderings"])
    assert "paired 95 % bootstrap interval" in out and "minutes per stage" in out
    assert {"train MNTP", "evaluate Uni rows (one pass)", "evaluate Bi + mean"} <= set(saved["stages"])
    run_demo(tmp_path / "demo", model_dir=tiny_encoder_folder, budget="smoke")  # everything is reused
    assert capsys.readouterr().out.count("reusing") == 3 + len(ROWS)
    # An 'eos' row from before l2v appended EOS (no appends_eos in its record) is evaluated again.
    old = tmp_path / "demo" / "eval" / "uni-eos.json"
    old.write_text(json.dumps({k: v for k, v in json.loads(old.read_text()).items() if k != "appends_eos"}))
    run_demo(tmp_path / "demo", model_dir=tiny_encoder_folder, budget="smoke")
    out = capsys.readouterr().out
    assert "evaluating Uni + EOS" in out and out.count("reusing") == 3 + len(ROWS) - 1
