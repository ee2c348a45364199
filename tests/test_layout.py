"""The package's shape. The folders show the architecture: l2v/ itself holds the paper's path (the
model, its pieces, the encoder, the loop and the steps), and each subpackage one kind of thing the
path stands on or serves. Every module has a layer (a folder may hold several: runtime/checkpoints
writes adapters, so it sits above the formats it uses), and imports only go down (or sideways), so
there is no import circle. The table below mirrors the folders: a new module gets a row in its
folder, and an import that goes up fails here with its file and line."""

import ast
import importlib
import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "l2v"

# Layers: 0 plumbing · 1 the model and its pieces · 2 files in and out · 3 texts in, embeddings out;
# the loop · 4 the paper's training steps · 5 evaluation and its suites · 6 other tools' readers ·
# 7 what a user runs. Within a folder, "" is its __init__.py.
LAYOUT = {
    "": {  # the paper's path
        "config": 1, "model": 1, "tokenizer": 1, "pooling": 1, "lora": 1, "contrastive": 1, "gradcache": 1,
        "settings": 1, "encoder": 3, "data": 3, "train": 3, "mntp": 4, "simcse": 4, "supervised": 4,
        "st_module": 6,  # where export folders from before this layout find sentence-transformers' module
        "__main__": 7,
    },
    "runtime": {"": 0, "checks": 0, "files": 0, "precision": 0, "distributed": 0, "checkpoints": 2},
    "formats": {"": 2, "loading": 2, "gguf": 2, "peft": 2, "export": 2, "st_module": 6, "mteb": 6},
    "sources": {"": 2, "wiki": 0, "fetch": 2, "corpora": 5, "mini": 5, "dev": 5, "suites": 5, "mined": 5},
    "evaluate": {"": 5, "tasks": 5, "metrics": 5, "estimators": 5},
    "tools": {"": 7, "cli": 7, "demo": 7, "experiment": 7, "analyze": 7, "plan": 7},
}
LAYERS = {".".join(filter(None, (folder, name))): layer for folder, names in LAYOUT.items()
          for name, layer in names.items()}
MOVED = {  # a module's home before this layout: it is importable from its new home only
    "checks": "runtime.checks", "files": "runtime.files", "precision": "runtime.precision",
    "distributed": "runtime.distributed", "loading": "formats.loading", "gguf_import": "formats.gguf",
    "export": "formats.export", "mteb_adapter": "formats.mteb", "fetch": "sources.fetch", "wiki": "sources.wiki",
    "evaluate.suites": "sources.suites", "evaluate.sources": "sources.corpora", "evaluate.mini": "sources.mini",
    "evaluate.dev": "sources.dev", "cli": "tools.cli", "demo": "tools.demo", "experiment": "tools.experiment",
    "analyze": "tools.analyze", "plan": "tools.plan", "stage": "train",
}
MAX_TOP_MODULES, MAX_FUNCTION_LINES = 20, 80


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path  # "" is the package itself
    return found


def imports(name: str, path: Path, known) -> list[tuple[str, int]]:
    """(module imported, line) for every import of an l2v module, also those inside functions.
    `from .. import __version__` (the package's version) is not an import of a layer."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                if target == "" and alias.name == "__version__":
                    continue
                sub = f"{target}.{alias.name}".strip(".")
                found.append((sub if sub in known else target, node.lineno))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "l2v":
            found.append((node.module.removeprefix("l2v").strip("."), node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name.removeprefix("l2v").strip("."), node.lineno) for a in node.names
                      if a.name.split(".")[0] == "l2v"]
    return [(t, line) for t, line in found if t != name]


def test_the_folders_are_the_table():
    on_disk = {}
    for name in set(modules()) - {""}:
        folder, _, module = (name, "", "") if name in LAYOUT else name.rpartition(".")  # in LAYOUT: an __init__.py
        on_disk.setdefault(folder, set()).add(module)
    assert on_disk == {folder: set(names) for folder, names in LAYOUT.items()}, \
        "give each new module a row in its folder of LAYOUT (and each gone one none)"


def test_the_papers_path_is_short():
    top = [p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules at l2v/'s top: the rest belong in a subpackage"
    long = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
            for path in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"functions longer than {MAX_FUNCTION_LINES} lines (split them by responsibility):\n" + "\n".join(long)


def test_no_module_imports_one_above_its_layer():
    known = modules()
    up = [f"{path.relative_to(PACKAGE.parent)}:{line} ({name}, layer {LAYERS[name]}) imports {target} "
          f"(layer {LAYERS[target]})"
          for name, path in known.items() if name
          for target, line in imports(name, path, known)
          if target in LAYERS and LAYERS[target] > LAYERS[name]]
    assert not up, "\n".join(up)
    inside = [f"{name} imports the package facade l2v/__init__.py" for name, path in known.items() if name
              for target, _ in imports(name, path, known) if target == ""]
    assert not inside, "\n".join(inside)


def test_no_import_circle():
    known = modules()
    graph = {name: {t for t, _ in imports(name, path, known) if t in known} for name, path in known.items()}

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    circles = [name for name in graph if name in reach(name)]
    assert not circles, f"import circle through {', '.join(circles)}"


def test_moved_modules_live_in_their_new_homes_only():
    old = [f"l2v.{name}" for name in MOVED if importlib.util.find_spec(f"l2v.{name}") is not None]
    assert not old, f"still importable from an old home: {', '.join(old)}"
    assert all(importlib.util.find_spec(f"l2v.{new}") is not None for new in MOVED.values())


def test_export_folders_from_before_the_layout_still_load():
    """An export folder's modules.json names its module by path: the old one still gives the same class."""
    old = importlib.import_module("l2v.st_module").L2VModule
    assert old is importlib.import_module("l2v.formats.st_module").L2VModule
