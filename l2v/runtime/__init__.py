"""Run-time plumbing, none of it the recipe: errors and value ranges (checks), files written
whole or not at all (files), which number format computes (precision), several GPUs
(distributed), a training run's folder, checkpoints and log (checkpoints)."""
