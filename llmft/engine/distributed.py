"""Processes under torchrun: process group setup, rank queries and the few collectives the loop needs. A single process
(no WORLD_SIZE) gets a no-op `Dist` with rank 0 of 1. How the model is spread over them is engine/strategy.py's."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class Dist:
    """This process's place in the process group, and the device every collective's tensor lives on (NCCL has no CPU
    collectives: a tensor handed to one must be on the process's GPU)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum over ranks, on this process's device (a new tensor; the input is left alone)."""
        if not self.enabled:
            return value
        out = value.detach().to(self.device, copy=True)
        torch.distributed.all_reduce(out)
        return out

    def sum_number(self, value: float) -> float:
        """The sum of a host number over ranks (a sync point)."""
        if not self.enabled:
            return value
        return self.sum(torch.tensor(float(value), dtype=torch.float64, device=self.device)).item()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def gather_tensors(self, obj: Any) -> list[Any]:
        """Like `gather` for objects holding tensors (sent as torch.save bytes: tensors in pickled
        collectives do not round-trip on every backend)."""
        import io

        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return [torch.load(io.BytesIO(b), weights_only=True) for b in self.gather(buffer.getvalue())]

    def shared(self, work: Callable[[Any], list], rows: Any) -> list:
        """`work(rows)` (a list with an item per row of a datasets.Dataset: host numbers or CPU tensors) computed by
        the processes together: each runs `work` on a contiguous share of the rows, and every process gets the whole
        list back, in row order."""
        if not self.enabled:
            return work(rows)
        mine = work(rows.shard(self.world, self.rank, contiguous=True))
        return [item for part in self.gather_tensors(mine) for item in part]

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def world_from_env(device: torch.device = torch.device("cpu")) -> Dist:
    """What torchrun says about this process (without touching the process group)."""
    return Dist(
        rank=int(os.environ.get("RANK", 0)),
        world=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        device=device,
    )


def _export_slurm_env() -> None:
    """Under a submitit/SLURM launcher with several tasks, set the torch.distributed variables from SLURM's."""
    if int(os.environ.get("SLURM_NTASKS", 1)) > 1 and "RANK" not in os.environ:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def setup(device: torch.device, timeout_minutes: int = 60) -> Dist:
    """Join the process group when launched by torchrun (or SLURM tasks): gloo on CPU, nccl on CUDA. The returned
    `Dist` puts every collective's tensor on `device`."""
    _export_slurm_env()
    dist = world_from_env(device)
    device_type = device.type
    if dist.enabled and not torch.distributed.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(device)
        from datetime import timedelta

        torch.distributed.init_process_group(
            backend="nccl" if device_type == "cuda" else "gloo", timeout=timedelta(minutes=timeout_minutes)
        )
    return dist


def teardown() -> None:
    """Destroy the process group once the DDP/FSDP model is gone. Call it after the frame holding the wrapped model
    has returned: if a DDP reducer drops the group's last reference, the group is destroyed while the GIL is held and
    a gloo worker freeing a Python-owned tensor deadlocks against it (pytorch/pytorch#56297)."""
    import gc

    gc.collect()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
