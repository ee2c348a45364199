"""Several processes (GPUs) with `torchrun`, on the same training loop.

    torchrun --nproc_per_node 8 -m l2v mntp   --model ... --out ...     # data parallel
    torchrun --nproc_per_node 8 -m l2v simcse --model ... --out ...     # negatives span all GPUs

Every process builds the same global micro-batch, keeps its own slice of it (`shard`), and after
the backward pass the LoRA gradients are averaged across processes (`average_gradients`) — plain
data parallelism, written out: with only LoRA trainable there are few gradients to send.

Contrastive losses need more: with in-batch negatives, a sentence on GPU 0 must be compared with
the sentences on every other GPU. `gather_with_grad` collects the embeddings from all processes
and keeps the autograd link to the local slice, so every process computes the same global loss;
averaging gradients then gives exactly the gradient of a single process on the whole batch (as
the official LLM2Vec code does).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init() -> bool:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1). → whether distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """The process that logs, shows progress and writes checkpoints."""
    return rank() == 0


def shard(items: list) -> list:
    """This process's contiguous slice of a global batch (the batch size must divide evenly)."""
    n, w = len(items), world_size()
    if n % w:
        raise ValueError(f"a global batch of {n} cannot be split evenly across {w} processes")
    return items[rank() * n // w : (rank() + 1) * n // w]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(B_local, D) on each process → (B_local · world, D), in rank order, differentiable w.r.t. x."""
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()))


def average_gradients(params):
    """All-reduce the gradients and divide by the number of processes."""
    if not is_distributed():
        return
    w = world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(w)
