"""Issue 7: the demo's orchestration (on a tiny model, smoke budget) and the layer analysis."""

import json
from pathlib import Path

import pytest
import torch

import l2v
from l2v.sources.fetch import wiki_path
from l2v.sources.mini import SIZES
from l2v.sources.suites import suite_folder
from l2v.tools.analyze import analyze_layers, layer_similarity


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


@pytest.mark.skipif(not (suite_folder("l2v-mini-quick") / "DONE").is_file() or not wiki_path().is_file(),
                    reason="run `l2v fetch l2v-mini` and `l2v fetch wiki` first")
def test_demo_smoke_run_and_reuse(tiny_encoder_folder, tmp_path, capsys):
    from l2v.tools.demo import BEYOND, CLAIMS, ROWS, run_demo

    summary = run_demo(tmp_path / "demo", model_dir=tiny_encoder_folder, budget="smoke")
    assert [r["row"] for r in summary["rows"]] == [name for name, *_ in ROWS]
    for sub in ("mntp", "simcse", "simcse-only"):
        assert (tmp_path / "demo" / sub / "adapter_model.safetensors").is_file()
    assert (tmp_path / "demo" / "results.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    row = {r["row"]: r for r in saved["rows"]}
    assert row["Bi + MNTP + SimCSE"]["adapters"][-1].endswith("simcse") and saved["rows"][0]["pooling"] == "eos"
    # The echo row: zero-shot, causal, its own pass with the text laid out twice.
    assert row["Uni + echo mean"]["echo"] and row["Uni + echo mean"]["causal"] and not row["Uni + echo mean"]["adapters"]
    assert row["Uni + echo mean"]["shared_pass"] is None and not row["Uni + mean"].get("echo")
    assert saved["rows"][0]["appends_eos"] and saved["rows"][1]["pooling"] == "last"
    # Scored on the smoke suite's own (small) task folders, not the full suite's.
    smoke_tasks = [t for t in suite_folder("l2v-mini-smoke").iterdir() if t.is_dir()]
    assert all(r["suite"] == "l2v-mini-smoke" for r in saved["rows"]) and len(row["Bi + mean"]["tasks"]) == len(smoke_tasks)
    bible = next(t for t in row["Bi + mean"]["tasks"] if t["task"] == "kjv-asv-pairs")
    assert bible["n_items"] < SIZES["bible_pairs"][0]  # the full suite has 300 verse pairs
    out = capsys.readouterr().out
    assert "Bi + MNTP + SimCSE" in out and "Avg" in out
    # The three untrained causal rows came from one pass; every ordering has its interval, per type too.
    assert "Uni + EOS, Uni + last token, Uni + mean on l2v-mini-smoke (one causal pass)" in out
    assert saved["rows"][0]["shared_pass"] == ["eos", "last", "mean"] and row["Bi + mean"]["shared_pass"] is None
    assert len(saved["orderings"]) == len(CLAIMS) and all(c["low"] <= c["diff"] <= c["high"] for c in saved["orderings"])
    assert "Uni + echo mean > Uni + mean" in {c["claim"] for c in saved["orderings"]}
    assert all(set(c["types"]) == set(saved["rows"][0]["averages"]) - {"all"} for c in saved["orderings"])
    assert "paired 95 % bootstrap interval" in out and "minutes per stage" in out and "Retr. " in out
    # The findings in words, named for this model, budget and suite (not a claim about LLM2Vec at large).
    assert "What this run shows (" in out and "budget 'smoke', suite l2v-mini-smoke" in out
    assert "causal mean pooling" in out and saved["halves"] == {}  # halves only on l2v-dev
    assert flat(BEYOND) in flat(out)  # what the searches beyond the recipe found
    assert {"train MNTP", "evaluate Uni rows (one pass)", "evaluate Bi + mean"} <= set(saved["stages"])
    run_demo(tmp_path / "demo", model_dir=tiny_encoder_folder, budget="smoke")  # everything is reused
    assert capsys.readouterr().out.count("reusing") == 3 + len(ROWS)
    # An 'eos' row from before l2v appended EOS (no appends_eos in its record) is evaluated again.
    old = tmp_path / "demo" / "eval" / "l2v-mini-smoke" / "uni-eos.json"
    old.write_text(json.dumps({k: v for k, v in json.loads(old.read_text()).items() if k != "appends_eos"}))
    run_demo(tmp_path / "demo", model_dir=tiny_encoder_folder, budget="smoke")
    out = capsys.readouterr().out
    assert "evaluating Uni + EOS" in out and out.count("reusing") == 3 + len(ROWS) - 1
    # A row scored with other adapters than this folder's is not reused either.
    old = tmp_path / "demo" / "eval" / "l2v-mini-smoke" / "bi-mntp.json"
    old.write_text(json.dumps({**json.loads(old.read_text()), "adapters": ["elsewhere/mntp"]}))
    run_demo(tmp_path / "demo", model_dir=tiny_encoder_folder, budget="smoke")
    assert "evaluating Bi + MNTP on" in capsys.readouterr().out


def test_demo_folder_keeps_to_its_budget(tiny_encoder_folder, tmp_path):
    """A run folder's adapters are reused by the next run: another budget (or model) in the same folder
    would silently stand in for its own training, so it is refused before anything is trained."""
    from l2v.runtime.checks import L2VError
    from l2v.tools.demo import claim_folder

    plan = {"budget": "quick", "model": str(tiny_encoder_folder), "mntp": {"steps": 10}, "simcse": {"steps": 8}}
    claim_folder(tmp_path / "demo", plan)
    claim_folder(tmp_path / "demo", plan)  # the same budget again: fine
    with pytest.raises(L2VError, match=r"holds the runs of budget 'quick'.*differs in budget, mntp"):
        claim_folder(tmp_path / "demo", {**plan, "budget": "cpu", "mntp": {"steps": 60}})
    with pytest.raises(L2VError, match="differs in model"):
        claim_folder(tmp_path / "demo", {**plan, "model": "other"})
    # A folder from before plan.json: its results.json names the budget.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps({"budget": "cpu"}))
    with pytest.raises(L2VError, match="budget 'cpu'"):
        claim_folder(tmp_path / "old", plan)


def test_demo_budgets():
    """`long` is the cpu budget with four times its steps, scored on l2v-dev (l2v/tools/demo.py's budget table)."""
    from l2v.settings import PRESETS
    from l2v.sources.suites import SUITES
    from l2v.tools.demo import BUDGETS

    assert {b["suite"] for b in BUDGETS.values()} <= set(SUITES) and BUDGETS["long"]["suite"] == "l2v-dev"
    for stage in ("mntp", "simcse"):
        long, cpu = BUDGETS["long"][stage], BUDGETS["cpu"][stage]
        assert long["preset"] == cpu["preset"] == "cpu"
        assert long["steps"] == 4 * PRESETS[stage]["cpu"].steps and set(long) == {"preset", "steps"}


def test_demo_cli_refuses_another_budget_in_a_folder(tmp_path, capsys):
    from l2v.tools.cli import main

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "plan.json").write_text(json.dumps({"budget": "cpu", "model": str(tmp_path), "mntp": {},
                                                              "simcse": {}}))
    assert main(["demo", "--out", str(tmp_path / "demo"), "--model", str(tmp_path), "--budget", "quick"]) == 2
    err = capsys.readouterr().err
    assert "holds the runs of budget 'cpu'" in err and len(err.strip().splitlines()) == 1


def test_comparison_table_shows_the_suites_types_only():
    from l2v.evaluate import comparison_table

    records = [{"row": "Uni + mean", "averages": {"sts": 0.67, "pair_classification": 0.81, "all": 0.74}},
               {"row": "Bi + mean", "averages": {"sts": 0.65, "pair_classification": 0.77, "all": 0.71}}]
    head, _, first, second = comparison_table(records).splitlines()
    assert head.split() == ["STS", "Pair", "Avg"]
    assert first.split()[-3:] == ["67.00", "81.00", "74.00"] and second.split()[-1] == "71.00"


@pytest.mark.skipif(not (suite_folder("l2v-mini-quick") / "DONE").is_file(), reason="run `l2v fetch l2v-mini` first")
def test_the_smoke_suite_is_one_small_task_of_each_type():
    """`l2v demo --budget smoke` exercises every metric in seconds a row: one task per type, a few dozen items."""
    from l2v.evaluate import MAIN_SCORES, Task
    from l2v.sources.suites import build_suite

    tasks = [Task.load(folder) for folder in build_suite("l2v-mini-smoke")]
    assert sorted(t.type for t in tasks) == sorted(MAIN_SCORES)
    assert all(len(t.texts()) <= 100 for t in tasks), {t.name: len(t.texts()) for t in tasks}


def flat(text: str) -> str:
    """Text as words: line breaks, Markdown's bold and code marks aside."""
    return " ".join(text.replace("**", "").replace("`", "").split())


def test_the_readme_says_what_the_demo_prints(capsys):
    """Issue 39: which kinds each technique beyond the recipe helps and hurts, one paragraph, said by
    `l2v demo` after its findings and by the README word for word."""
    from l2v.tools.demo import BEYOND, print_findings

    print_findings([], {}, "here")
    assert capsys.readouterr().out.rstrip().endswith(BEYOND)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert flat(BEYOND) in flat(readme)
    assert "echo" in BEYOND and "Uni + echo mean" in BEYOND  # it names the demo row it speaks of
