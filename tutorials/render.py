"""Execute the tutorial notebooks and write rendered copies, outputs and figures included.

    python tutorials/render.py                 # every notebook, on SmolLM2 (`l2v fetch` smollm2, wiki, l2v-mini first)
    python tutorials/render.py 03 05           # only these
    python tutorials/render.py --tiny --out /tmp/r 01    # TINY mode, elsewhere (what the test runs)

Rendered copies go to tutorials/rendered/, one per notebook under its own name (GitHub and
Jupyter show them as they ran). On the real model, the values the notebooks print through `common.show` are also written to
tutorials/smollm2_values.json, which TINY mode prints beside its own numbers. The notebooks in
tutorials/ themselves stay stripped (tests/test_tutorials.py checks that). In the repository,
notebook 12 (the capstone) runs the worked solutions (tests/assignment_solutions/); in a hand-out,
the student's own a11_capstone.py.
"""

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def stamp(tiny: bool) -> dict:
    """The commit a copy was rendered at, and whether l2v/ or common.py had changes not committed."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True).stdout.strip()

    dirty = bool(git("status", "--porcelain", "--", "../l2v", "common.py"))
    return {"commit": git("rev-parse", "HEAD"), "library_changes_uncommitted": dirty,
            "mode": "tiny" if tiny else "SmolLM2-135M-Instruct", "rendered": time.strftime("%Y-%m-%d")}


def stamp_values(notebook: str, commit: str):
    """smollm2_values.json's "_commits": the commit each notebook's recorded values were made at."""
    import json

    values_file = HERE / "smollm2_values.json"
    values = json.loads(values_file.read_text()) if values_file.is_file() else {}
    if any(key.startswith(f"{notebook} ") for key in values):
        values["_commits"] = {**values.get("_commits", {}), notebook: commit}
        values_file.write_text(json.dumps(values, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def render(names=(), out: Path = HERE / "rendered", tiny: bool = False, timeout: int = 1800) -> list[tuple[str, float]]:
    import nbclient
    import nbformat
    from tqdm import tqdm

    notebooks = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if names:
        notebooks = [p for p in notebooks if p.name[:2] in names or p.stem in names]
        missing = set(names) - {p.name[:2] for p in notebooks} - {p.stem for p in notebooks}
        if missing:
            raise SystemExit(f"no notebook {', '.join(sorted(missing))} in {HERE}")
    out.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("L2V_TINY", "L2V_RECORD", "L2V_CAPSTONE_FROM")}
    os.environ["L2V_TINY"], os.environ["L2V_RECORD"] = ("1", "0") if tiny else ("0", "1")
    solutions = HERE.parent / "tests" / "assignment_solutions"  # the repository's, not a hand-out's
    if solutions.is_dir() and "L2V_CAPSTONE_FROM" not in os.environ:
        os.environ["L2V_CAPSTONE_FROM"] = str(solutions)  # 12's rendered copy runs the worked capstone
    times = []
    try:
        for path in tqdm(notebooks, desc="rendering", unit="notebook"):
            nb = nbformat.read(path, as_version=4)
            start = time.perf_counter()
            nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(HERE)}}).execute()
            times.append((path.name, (time.perf_counter() - start) / 60))
            nb.metadata["l2v"] = stamp(tiny)  # which library this copy shows (tests/test_tutorials.py checks it)
            if not tiny:
                stamp_values(path.name[:2], nb.metadata["l2v"]["commit"])
            for cell in nb.cells:  # progress bars, "IProgress not found", shard-writing logs: stderr, not content
                if cell.cell_type == "code":
                    cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
            nbformat.write(nb, out / path.name)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    size = sum(p.stat().st_size for p in out.glob("*.ipynb")) / 2**20
    print(f"{len(times)} notebooks rendered to {out} ({size:.2f} MiB in all): "
          + ", ".join(f"{n[:2]} {m:.1f} min" for n, m in times))
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="notebook numbers (03) or names; default: all")
    p.add_argument("--out", type=Path, default=HERE / "rendered", help="where the copies go (default tutorials/rendered)")
    p.add_argument("--tiny", action="store_true", help="TINY mode (seconds; records no SmolLM2 values)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds one cell may run")
    args = p.parse_args(argv)
    render(args.names, args.out, args.tiny, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
