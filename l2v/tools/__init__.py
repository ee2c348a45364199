"""What a user runs: the `l2v` command (cli), `l2v demo` (demo) and the experiment engine under it
and scripts/recipe.py (experiment), the paper's analyses (analyze), the memory planner (plan)."""
