"""Issue 24: the experiment engine `l2v demo` and scripts/recipe.py share (l2v/tools/experiment.py), on stub
stages and stub evaluations: what is trained or scored again, and what is read back."""

import json
import re

import pytest

import l2v.evaluate
from l2v.sources.suites import SUITES
from l2v.tokenizer import INSTRUCTION_RULE
from l2v.tools.experiment import Row, Timer, compare_rows, evaluate_rows, train_once, verdict


def test_train_once_trains_resumes_and_reuses(tmp_path, capsys):
    calls = []

    def stage(model, data, out, *, resume, steps):
        calls.append((model, data, out, resume, steps))
        out.mkdir(exist_ok=True)
        if steps > 1:  # a finished run: the adapter is written last
            (out / "adapter_model.safetensors").write_bytes(b"")

    dest = tmp_path / "mntp"
    train_once(dest, stage, "model", "wiki", steps=1)  # stopped before its adapter: a checkpoint only
    assert calls == [("model", "wiki", dest, False, 1)]
    assert train_once(dest, stage, "model", "wiki", steps=2) == dest  # the folder is there: resumed
    assert calls[-1] == ("model", "wiki", dest, True, 2)
    train_once(dest, stage, "model", "wiki", steps=2)  # the adapter is there: not trained again
    assert len(calls) == 2 and f"reusing {dest}" in capsys.readouterr().out


DEV_TASKS = [("bbc-reuse-sts", "sts"), ("bible-reuse-sts", "sts"), ("bbc-halves-pairs", "pair_classification"),
             ("kjv-asv-hard-pairs", "pair_classification"), ("debate-speaker-classification", "classification"),
             ("rotten-tomatoes-sentiment", "classification"), ("bbc-sentence-retrieval", "retrieval"),
             ("bible-verse-retrieval", "retrieval"), ("bbc-subject-sts", "sts"),
             ("bible-subject-sts", "sts")]  # l2v-dev's four types and two long kinds, two each, one in each half


@pytest.fixture
def scored(monkeypatch):
    """Stub evaluate_model(_poolings): records as the real ones name their settings; → the calls."""
    calls = []

    def record(model_dir, *, adapters=(), causal=False, pooling="mean", suite=None, autocast=False, max_length=512,
               shared=None, **settings):
        seed = re.search(r"-s(\d+)", str(adapters[0])) if adapters else None  # runs/recipe/NAME-sS/...
        main = 0.5 + 0.1 * causal + 0.01 * len(adapters) + 0.002 * int(seed.group(1) if seed else 0)
        tasks = [{"task": name, "type": kind, "main_score": main,
                  "bootstrap": [main + 0.01 * j for j in range(-5, 6)]} for name, kind in DEV_TASKS]
        return dict(model=str(model_dir), adapters=[str(a) for a in adapters], causal=causal, pooling=pooling,
                    appends_eos=pooling == "eos", instructions=INSTRUCTION_RULE, max_length=max_length, autocast=autocast, suite=suite,
                    suite_version=SUITES[suite].version if suite else None,
                    shared_pass=shared, averages=l2v.evaluate.type_averages(tasks), tasks=tasks)

    def evaluate_model(model_dir, **kw):
        calls.append(("one", kw["pooling"], kw["causal"], tuple(kw.get("adapters", ()))))
        return record(model_dir, **kw)

    def evaluate_model_poolings(model_dir, poolings, **kw):
        calls.append(("shared", tuple(poolings)))
        return {p: record(model_dir, causal=True, pooling=p, shared=list(poolings), **kw) for p in poolings}

    monkeypatch.setattr(l2v.evaluate, "evaluate_model", evaluate_model)
    monkeypatch.setattr(l2v.evaluate, "evaluate_model_poolings", evaluate_model_poolings)
    return calls


def rows_in(folder):
    return [Row("Uni + EOS", True, "eos", (), folder / "uni-eos.json"),
            Row("Uni + mean", True, "mean", (), folder / "uni-mean.json"),
            Row("Bi + mean", False, "mean", (), folder / "bi-mean.json"),
            Row("Bi + MNTP", False, "mean", (folder / "mntp",), folder / "bi-mntp.json")]


def test_evaluate_rows_scores_once_and_reads_back(scored, tmp_path, capsys):
    rows, timer = rows_in(tmp_path), Timer()
    done = evaluate_rows("model", rows, suite="l2v-dev", autocast=False, timer=timer)
    # The untrained causal rows in one pass; the others one by one; every record on disk.
    assert scored == [("shared", ("eos", "mean")), ("one", "mean", False, ()),
                      ("one", "mean", False, (tmp_path / "mntp",))]
    assert list(done) == [r.name for r in rows] and all(r.path.is_file() for r in rows)
    assert json.loads(rows[3].path.read_text()) == done["Bi + MNTP"]
    assert {"evaluate Uni rows (one pass)", "evaluate Bi + mean", "evaluate Bi + MNTP"} == set(timer.minutes)
    assert "Uni + EOS, Uni + mean on l2v-dev (one causal pass)" in capsys.readouterr().out

    scored.clear()
    assert evaluate_rows("model", rows, suite="l2v-dev") == done  # the same settings: all read back
    assert scored == [] and capsys.readouterr().out.count("reusing") == len(rows)

    # Scored on another version of the suite (its tasks differ), or before records named one (l2v-dev v2): again.
    for change in ({"suite_version": SUITES["l2v-dev"].version - 1}, {"suite_version": None}):
        old = json.loads(rows[2].path.read_text())
        rows[2].path.write_text(json.dumps({k: v for k, v in {**old, **change}.items() if v is not None}))
        evaluate_rows("model", rows, suite="l2v-dev")
        assert scored == [("one", "mean", False, ())]
        scored.clear()

    # Made before instructions were tokenised with their text (another instructions rule): scored again.
    old = json.loads(rows[2].path.read_text())
    rows[2].path.write_text(json.dumps({k: v for k, v in old.items() if k != "instructions"}))
    evaluate_rows("model", rows, suite="l2v-dev")
    assert scored == [("one", "mean", False, ())]
    scored.clear()

    # Stored under other settings or adapters, or from before EOS was appended: scored again.
    evaluate_rows("model", rows, suite="l2v-dev", autocast=True)
    assert len(scored) == 3
    scored.clear()
    for row, change in ((rows[0], {"appends_eos": None}), (rows[3], {"adapters": ["elsewhere/mntp"]})):
        old = json.loads(row.path.read_text())
        row.path.write_text(json.dumps({k: v for k, v in {**old, **change}.items() if v is not None}))
    evaluate_rows("model", rows, suite="l2v-dev", autocast=True)
    # One causal row to score again: no shared pass.
    assert scored == [("one", "eos", True, ()), ("one", "mean", False, (tmp_path / "mntp",))]
    scored.clear()
    evaluate_rows("model", rows, suite="l2v-dev", autocast=True, max_length=128)
    evaluate_rows("other-model", rows, suite="l2v-dev", autocast=True, max_length=128)
    assert len(scored) == 2 * 3
    scored.clear()
    evaluate_rows("model", rows, suite="l2v-dev", autocast=True, max_length=128, dtype="bfloat16")  # another dtype
    assert len(scored) == 3


def test_records_from_before_one_autocast_name_are_read_back(scored, tmp_path):
    rows = rows_in(tmp_path)
    evaluate_rows("model", rows, suite="l2v-dev")
    for row in rows:  # as records were written when the key was bf16_autocast
        old = json.loads(row.path.read_text())
        row.path.write_text(json.dumps({**{k: v for k, v in old.items() if k != "autocast"}, "bf16_autocast": False}))
    scored.clear()
    evaluate_rows("model", rows, suite="l2v-dev")
    assert scored == []
    evaluate_rows("model", rows, suite="l2v-dev", autocast=True)
    assert len(scored) == 3


def test_compare_rows_and_verdicts(scored, tmp_path):
    done = evaluate_rows("model", rows_in(tmp_path), suite="l2v-dev")
    claims = compare_rows(done, [("Uni + mean", "Bi + mean"), ("Bi + MNTP", "Bi + mean"), ("Bi + mean", "Uni + EOS"),
                                 ("Bi + MNTP + SimCSE", "Bi + mean")])  # the last: a row not scored, left out
    assert [c["claim"] for c in claims] == ["Uni + mean > Bi + mean", "Bi + MNTP > Bi + mean", "Bi + mean > Uni + EOS"]
    assert [c["diff"] for c in claims] == [10.0, 1.0, -10.0]
    assert set(claims[0]["types"]) == {"sts", "pair_classification", "classification", "retrieval"}
    assert [verdict(c) for c in claims] == ["holds", "holds", "reversed"]
    assert verdict({"diff": 0.5, "low": -0.2, "high": 1.2}) == "within the noise"
    from l2v.sources.dev import half

    (on_a,) = compare_rows(done, [("Uni + mean", "Bi + mean")], select=lambda t: half(t) == "A")
    assert on_a["diff"] == 10.0 and set(on_a["types"]) == set(claims[0]["types"])
    with pytest.raises(ValueError):  # nothing selected: no type to compare
        compare_rows(done, [("Uni + mean", "Bi + mean")], select=lambda t: False)


def test_findings_in_words():
    from l2v.tools.experiment import headline, in_words

    d = lambda diff, low, high: {"diff": diff, "low": low, "high": high}  # noqa: E731
    c = {"claim": "Bi + MNTP + SimCSE > Uni + mean", **d(2.0, 1.0, 3.0),
         "types": {"sts": d(-2.0, -3.0, -1.0), "retrieval": d(6.0, 4.0, 8.0), "classification": d(0.1, -1.0, 1.0)}}
    assert in_words(c) == ("Bi + MNTP + SimCSE > Uni + mean: holds on the average (+2.0 [+1.0, +3.0]); "
                           "reversed on STS; holds on Retr.; within the noise on Class.")
    assert "on the average but loses on some task type" in headline(c, "Here")
    every = {**c, "types": {"sts": d(1.0, 0.5, 1.5)}}
    assert "beats causal mean pooling on every task type (+2.0" in headline(every, "Here")
    below = {**c, **d(-5.0, -6.0, -4.0)}
    assert headline(below, "On half B").startswith("On half B: the trained bidirectional model does NOT beat")
    assert "within the noise" in headline({**c, **d(0.5, -1.0, 2.0)}, "Here")


def test_recipe_script_trains_and_scores_through_the_engine(scored, tmp_path, monkeypatch, capsys):
    """scripts/recipe.py on stub stages: each stage trained once with the preset and the k=v changes,
    each row scored once, each run logged once."""
    import importlib.util
    import sys
    from pathlib import Path

    import l2v.formats.peft
    import l2v.mntp
    import l2v.simcse
    import l2v.supervised

    path = Path(__file__).resolve().parent.parent / "scripts" / "recipe.py"
    spec = importlib.util.spec_from_file_location("recipe_script", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    monkeypatch.setattr(recipe, "ROOT", tmp_path / "recipe")
    trained = []

    def stage(*args, settings, resume):
        if settings is not None:
            trained.append((type(settings).__name__, settings.steps, settings.seed, args[-2]))
        args[-1].mkdir(parents=True)
        (args[-1] / "adapter_model.safetensors").write_bytes(b"")

    monkeypatch.setattr(l2v.mntp, "run_mntp", stage)
    monkeypatch.setattr(l2v.simcse, "run_simcse", stage)
    monkeypatch.setattr(l2v.supervised, "run_supervised", stage)
    monkeypatch.setitem(recipe.DATA, "mined", lambda: "mined.jsonl")  # not the real dump: no mining here
    averaged = []

    def average_adapters(folders, dst):
        averaged.append((list(folders), dst))
        stage(dst, settings=None, resume=False)
        return dst

    monkeypatch.setattr(l2v.formats.peft, "average_adapters", average_adapters)

    def main(*argv):
        monkeypatch.setattr(sys, "argv", ["recipe.py", *argv])
        recipe.main()

    main("baselines")
    assert scored == [("shared", ("mean", "last", "eos", "weighted_mean")), ("one", "mean", False, ())]
    main("run", "x", "--mntp", "steps=3", "--simcse", "steps=2", "--seed", "7", "--each-stage")
    assert trained == [("MNTPSettings", 3, 7, "wiki"), ("SimCSESettings", 2, 7, "wiki")]
    mntp = tmp_path / "recipe" / "x-s7" / "mntp"
    assert scored[2:] == [("one", "mean", False, (mntp,)), ("one", "mean", False, (mntp, mntp.parent / "simcse"))]
    logged = recipe.entries()
    assert [(e["name"], e["seed"]) for e in logged][-2:] == [("x/mntp", 7), ("x", 7)]
    assert logged[-1]["mntp"] == {"steps": 3} and logged[-1]["simcse"] == {"steps": 2}
    main("baselines")
    main("run", "x", "--mntp", "steps=3", "--simcse", "steps=2", "--seed", "7", "--each-stage")  # all read back
    assert len(trained) == 2 and len(scored) == 4 and recipe.entries() == logged
    assert "x s7" in capsys.readouterr().out
    main("table", "--half", "B")
    main("halves")
    out = capsys.readouterr().out
    assert "l2v-dev, half B" in out and "L/S" in out
    assert "chosen on half A: x (seeds 7); checked on half B:" in out and "half B − bi-mean" in out
    main("table", "--half", "A", "--markdown")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| row | train min | STS |") and lines[2].startswith("| Uni + mean (scores) | – |")
    assert [line.split(" | ")[0] for line in lines[3:]] == ["| Uni + last token", "| Uni + EOS",
        "| Uni + weighted mean", "| Bi + mean, untrained", "| x s7: Bi + MNTP", "| x s7: Bi + MNTP + SimCSE"]
    assert all(line.count("[") == len(recipe.COLS) for line in lines[3:])

    # Echo rows, weak pairs after MNTP with two seeds, their average; halves choose on the mean over seeds.
    scored.clear()
    main("echo")
    assert scored == [("one", "mean", True, ()), ("one", "mean", False, ())]
    for seed in ("20", "9"):  # --supervised alone: no SimCSE stage
        main("run", "w", "--mntp", "steps=3", "--supervised", "steps=2", "--seed", seed, "--fp32")
    assert trained[2:] == [("MNTPSettings", 3, 20, "wiki"), ("SupervisedSettings", 2, 20, "mined.jsonl"),
                           ("MNTPSettings", 3, 9, "wiki"), ("SupervisedSettings", 2, 9, "mined.jsonl")]
    w = {e["seed"]: e for e in recipe.entries() if e["name"] == "w"}
    assert w[9]["supervised"] == {"steps": 2} and w[9]["simcse"] is None and w[9]["fp32_train"]
    assert json.loads((tmp_path / "recipe" / "w-s9" / "minutes.json").read_text())["precision"] == \
        {"mntp": "fp32", "supervised": "fp32"}
    with pytest.raises(SystemExit, match="trained in fp32, not"):  # a stage is not reused at another precision
        main("run", "w", "--mntp", "steps=3", "--supervised", "steps=2", "--seed", "9")
    main("average", "w", "--seeds", "9", "20")
    runs = [tmp_path / "recipe" / f"w-s{s}" for s in (9, 20)]
    avg = tmp_path / "recipe" / "w-avg-s9+20"
    assert averaged == [([r / "mntp" for r in runs], avg / "mntp"), ([r / "supervised" for r in runs], avg / "supervised")]
    assert scored[-1] == ("one", "mean", False, (avg / "mntp", avg / "supervised"))
    capsys.readouterr()
    main("halves")
    out = capsys.readouterr().out
    # w's seeds score 0.538 and 0.560: their mean (0.549) beats x (0.534) and the average of the updates (0.538)
    assert "chosen on half A: w (seeds 9, 20, their mean)" in out
    assert "half B − uni-echo-mean" in out and "L/L" in out
    main("table", "--half", "B", "--markdown")
    lines = capsys.readouterr().out.splitlines()
    names = [line.split(" | ")[0] for line in lines[3:]]
    assert names[-6:] == ["| Uni + echo mean (zero-shot)", "| Bi + echo mean (zero-shot)", "| w s20: Bi + MNTP + weak pairs",
                          "| w s9: Bi + MNTP + weak pairs", "| **w: mean of 2 seeds** ± seed sd",
                          "| w avg: Bi + MNTP + weak pairs, the mean update of seeds 9, 20"]
    seed_row = lines[3 + names.index("| **w: mean of 2 seeds** ± seed sd")]
    # −6.2 and −4.0 against Uni + mean (0.600): their mean −5.1, their sd 1.6, in every column
    assert seed_row.count("−5.1 [−5.1, −5.1] ±1.6") + seed_row.count("-5.1 [-5.1, -5.1] ±1.6") == len(recipe.COLS)
    with pytest.raises(SystemExit, match="needs two or more finished seeds"):
        main("average", "w", "--seeds", "9", "3")


def test_scripts_start(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for script in ("bench.py", "bench_gpu.py", "recipe.py"):
        out = subprocess.run([sys.executable, root / "scripts" / script, "--help"], capture_output=True, text=True,
                             cwd=tmp_path)
        assert out.returncode == 0, out.stderr


def test_a_record_naming_no_version_was_scored_on_v2(scored, tmp_path):
    """Records began to name their suite's version when every suite was at version 2 (l2v-mini's quick and
    smoke cuts included): such a record is read back where the suite is still at 2, scored again elsewhere."""
    for suite in SUITES:
        row = Row("Bi + mean", False, "mean", (), tmp_path / suite / "bi-mean.json")
        evaluate_rows("model", [row], suite=suite)
        old = json.loads(row.path.read_text())
        row.path.write_text(json.dumps({k: v for k, v in old.items() if k != "suite_version"}))
        scored.clear()
        evaluate_rows("model", [row], suite=suite)
        assert scored == ([] if SUITES[suite].version == 2 else [("one", "mean", False, ())]), suite
