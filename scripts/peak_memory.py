"""The peak memory of a training step, measured: what `l2v plan` predicts, checked (tests/test_plan.py,
tests/test_cuda.py, scripts/bench_gpu.py). A measuring tool beside the planner, not part of it."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def measure_peak(step: Callable[[], object], model: torch.nn.Module) -> int:
    """Peak bytes of tensors alive while `step()` runs, the model's own parameters and buffers
    included: what a plan's total predicts (less a CPU's process row). On CUDA this is
    torch.cuda.max_memory_allocated, which counts everything on the device; on a CPU, which keeps
    no such count, every storage an op creates is followed until it is freed (`_LiveBytes`), so
    the plan is checked without a GPU — there, tensors made before `step` other than the model's
    (an optimizer's state from an earlier step) are not seen: make them inside it."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    counter = _LiveBytes()
    for t in list(model.parameters()) + list(model.buffers()):
        counter.count(t)
    with counter:
        step()
    return counter.peak


class _LiveBytes(TorchDispatchMode):
    """Sees the output of every ATen op (backward and recomputation included) and counts each new
    storage's bytes until Python's weakref says it is freed. Kernels' private scratch space is not
    seen, nor the allocator's rounding: the count is of tensors, like max_memory_allocated's."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.storages = set()

    def count(self, t: torch.Tensor):
        storage = t.untyped_storage()
        key = storage.data_ptr(), storage.nbytes()
        if key in self.storages or storage.nbytes() == 0:
            return  # a view, or an in-place op's output: no new memory
        self.storages.add(key)
        self.live += key[1]
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key)

    def _free(self, key):
        self.storages.discard(key)
        self.live -= key[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.count(t)
        return out
