"""The package's shape: every module has a layer, and imports only go down (or sideways) — no module
imports one above it, so there is no import circle. The table below is the architecture; a new
module gets a row, and an import that goes up fails here with its file and line."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "l2v"

LAYERS = {
    # 0. foundations: no model, no torch model code
    "checks": 0, "files": 0, "settings": 0, "precision": 0, "distributed": 0, "pooling": 0, "contrastive": 0,
    "wiki": 0,
    # 1. the model and what it is read from
    "config": 1, "model": 1, "loading": 1, "tokenizer": 1, "lora": 1, "gguf_import": 1, "fetch": 1, "gradcache": 1,
    # 2. texts in, embeddings out (and the folder that carries how); training text
    "encoder": 2, "export": 2, "data": 2,
    # 3. training: the loop, the prologue, the paper's steps, the memory plan
    "train": 3, "stage": 3, "mntp": 3, "simcse": 3, "supervised": 3, "plan": 3,
    # 4. evaluation
    "evaluate": 4, "evaluate.tasks": 4, "evaluate.metrics": 4, "evaluate.estimators": 4, "evaluate.sources": 4,
    "evaluate.mini": 4, "evaluate.dev": 4, "evaluate.suites": 4,
    # ... and other tools' readers
    "mteb_adapter": 4, "st_module": 4,
    # 5. what a user runs
    "experiment": 5, "demo": 5, "analyze": 5, "cli": 5, "__main__": 5,
}


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


def test_every_module_has_a_layer():
    assert set(modules()) - {""} == set(LAYERS), "give each new module a row in LAYERS (and each gone one none)"


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

