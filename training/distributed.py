"""Multi-process data-parallel helpers over torch.distributed (torchrun: gloo on CPU, NCCL on GPUs).

Training runs several phases per step that each touch a different part of G or D (main loss, lazy
regularisers), and calls G.mapping / G.synthesis rather than G.forward. So gradients are averaged
explicitly with one flat all_reduce per phase (what DistributedDataParallel does internally, without
its single-forward assumption), and weights are broadcast from rank 0 at start.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, device)


def shutdown(info: DistInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every process."""
    if info.world_size == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def average_gradients(params: list[nn.Parameter], info: DistInfo) -> None:
    """Average gradients over processes and replace non-finite values (NaN -> 0, +-inf -> +-1e5).

    A parameter the phase did not use keeps grad None, so Adam leaves it and its moments alone; the set
    of used parameters is the union over processes, so every process steps the same parameters.
    """
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=info.device)
    if info.world_size > 1:
        dist.all_reduce(used)
    params = [p for p, u in zip(params, used.tolist()) if u > 0]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    if info.world_size > 1:
        dist.all_reduce(flat)
        flat /= info.world_size
    torch.nan_to_num(flat, nan=0.0, posinf=1e5, neginf=-1e5, out=flat)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p)
        offset += n


def average_buffers(module: nn.Module, info: DistInfo) -> None:
    """Average floating-point buffers over processes (the mapping network's running mean of w is
    updated from each process's own latents; equal constants stay bit-identical)."""
    if info.world_size == 1:
        return
    bufs = [b for b in module.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = torch.cat([b.flatten() for b in bufs])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for b in bufs:
        b.copy_(flat[offset:offset + b.numel()].view_as(b))
        offset += b.numel()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's object (e.g. a checkpoint read from its own disk) on every process: resuming or
    fine-tuning needs the file on rank 0's machine only."""
    if info.world_size == 1:
        return obj
    holder = [obj if info.is_main else None]
    dist.broadcast_object_list(holder, src=0, device=info.device if info.device.type == "cuda" else None)
    return holder[0]


def gather_rows(rows: torch.Tensor, capacity: int, info: DistInfo) -> torch.Tensor:
    """Concatenate every process's rows [n_i, D] (n_i <= capacity) on every process."""
    if info.world_size == 1:
        return rows
    padded = torch.zeros(capacity, rows.shape[1], device=rows.device, dtype=rows.dtype)
    padded[:len(rows)] = rows
    count = torch.tensor([len(rows)], device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(info.world_size)]
    parts = [torch.zeros_like(padded) for _ in range(info.world_size)]
    dist.all_gather(counts, count)
    dist.all_gather(parts, padded)
    return torch.cat([part[:int(c)] for part, c in zip(parts, counts)])


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.world_size > 1:
        dist.all_reduce(values)
    return values


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()
