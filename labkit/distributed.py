"""Data parallelism under torchrun: each process trains on its slice of every global batch."""
import os

import torch
import torch.distributed as dist


def distributed():
    """(rank, world size) under torchrun, after joining its process group; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def leave(world):
    """Leave the process group at the end of a run. Left to interpreter exit, gloo's worker
    threads can abort the process ("terminate called without an active exception", SIGABRT)
    after training has finished, failing the whole torchrun."""
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device, world):
    """Under torchrun on GPUs, each process takes the GPU of its local rank."""
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device


def average_gradients(nets, world):
    """Mean gradient over ranks, as one flat all-reduce: each rank's losses are means over
    equal shards, so this is the gradient of the global batch."""
    grads = [p.grad for p in nets.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_ranks(values, world):
    """A dict of tensors, each averaged elementwise over all ranks (at logged steps only)."""
    if world > 1:
        for v in values.values():
            dist.all_reduce(v)
            v /= world
    return values
