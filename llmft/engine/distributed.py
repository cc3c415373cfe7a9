"""Data-parallel training under torchrun: process group setup, rank queries and the few collectives the
loop needs. A single process (no WORLD_SIZE) gets a no-op `Dist` with rank 0 of 1."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

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

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def world_from_env(device: torch.device = torch.device("cpu")) -> Dist:
    """What torchrun says about this process (without touching the process group)."""
    return Dist(rank=int(os.environ.get("RANK", 0)), world=int(os.environ.get("WORLD_SIZE", 1)),
                local_rank=int(os.environ.get("LOCAL_RANK", 0)), device=device)


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

        torch.distributed.init_process_group(backend="nccl" if device_type == "cuda" else "gloo",
                                             timeout=timedelta(minutes=timeout_minutes))
    return dist


def wrap(model: torch.nn.Module, dist: Dist, device: torch.device, fsdp: bool = False) -> torch.nn.Module:
    """DDP, or FSDP2 (each transformer block sharded, then the root). Build the optimizer afterwards."""
    if not dist.enabled:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        from llmft.models.finetune import _layers

        for layer in _layers(model):
            fully_shard(layer)
        fully_shard(model)
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


@contextmanager
def gradient_sync(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Gradient accumulation under DDP/FSDP: with `enabled=False` the backward pass skips the gradient all-reduce
    (DDP `no_sync`) or reduce-scatter (FSDP2 `set_requires_gradient_sync`); gradients accumulate locally until the
    last micro-batch, which syncs them all. Build one per micro-batch: a context manager is entered once."""
    if enabled:
        yield
    elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # an FSDP2 module
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:  # one process: nothing to sync
        yield


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on CPU (a collective under FSDP: every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The whole optimizer state keyed by parameter name, on CPU (a collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def teardown() -> None:
    """Destroy the process group once the DDP/FSDP model is gone. Call it after the frame holding the wrapped model
    has returned: if a DDP reducer drops the group's last reference, the group is destroyed while the GIL is held and
    a gloo worker freeing a Python-owned tensor deadlocks against it (pytorch/pytorch#56297)."""
    import gc

    gc.collect()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
