"""Issue 9: two processes (gloo, CPU) equal one process on the concatenated batch."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import free_port

import l2v
from l2v.contrastive import contrastive_loss
from l2v.lora import apply_lora, lora_parameters
from l2v.runtime import distributed
from l2v.supervised import Triple, embed_triples

TRIPLES = [Triple(f"where did cat {i} sit?", f"The cat {i} sat on the mat.", f"A dog {i} ran in the park.",
                  instruction="Retrieve the answer:") for i in range(8)]


def loss_and_grads(folder, triples):
    """The supervised contrastive step: embed this process's triples, gather, loss, backward, average."""
    torch.manual_seed(0)
    model = apply_lora(l2v.load_model(folder, causal=False), r=4, alpha=8, dropout=0.0)
    with torch.no_grad():  # B ≠ 0, so the LoRA branch matters
        for p in lora_parameters(model):
            p.normal_(std=0.05)
    encoder = l2v.Encoder(model.train(), l2v.Tokenizer(folder))
    q, p, n = (distributed.gather_with_grad(v) for v in embed_triples(encoder, distributed.shard(triples)))
    loss = contrastive_loss(q, p, n, scale=50.0)
    loss.backward()
    params = lora_parameters(model)
    distributed.average_gradients(params)
    return loss.detach(), [p.grad.clone() for p in params]


def worker(rank, world, port, folder, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    assert distributed.init() and distributed.world_size() == world
    loss, grads = loss_and_grads(folder, TRIPLES)
    torch.save({"loss": loss, "grads": grads}, f"{out}/rank{rank}.pt")
    dist.barrier()  # no rank tears gloo down while the other still talks to it (an abort at exit)
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_equal_one_on_the_whole_batch(tiny_encoder_folder, tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tiny_encoder_folder), str(tmp_path)), nprocs=2, join=True)
    one_loss, one_grads = loss_and_grads(tiny_encoder_folder, TRIPLES)  # not distributed: the whole batch
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["loss"], one_loss, atol=1e-5, rtol=0)
        for a, b in zip(got["grads"], one_grads):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_shard_requires_even_split():
    assert distributed.shard(list(range(6))) == list(range(6))  # one process: everything
    assert distributed.gather_with_grad(torch.ones(2, 3)).shape == (2, 3)
