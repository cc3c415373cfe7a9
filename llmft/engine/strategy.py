"""How one model trains over the processes torchrun started: one process, DDP, or FSDP2. The one place that knows which:
wrapping the model, gradient sync during accumulation, the full state a checkpoint saves and loads, and which ranks
share the eval batches. The rest of llmft asks the strategy object and never branches on its kind."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ContextManager, Iterator, Optional, Protocol

import torch

from llmft import config
from llmft.engine.distributed import Dist
from llmft.errors import UserError
from llmft.models.finetune import _layers
from llmft.runs.checkpoint import load_weights

LOCAL_FORMAT = "torch"  # optimizer.state_dict(): parameters by index, as a plain module holds them
FULL_FORMAT = "full-by-name"  # every parameter's state gathered from the shards, keyed by parameter name


class Strategy(Protocol):
    dist: Dist  # every process of the run
    eval_shard: Dist  # the ranks that split the eval batches between them (gathered, scored once)
    optimizer_format: str  # how `optimizer_state` lays the optimizer out (a checkpoint records it)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module: ...
    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module: ...
    def gradient_sync(self, model: torch.nn.Module, enabled: bool) -> ContextManager[None]: ...
    def full_weights(self, model: torch.nn.Module) -> Optional[dict[str, torch.Tensor]]: ...
    def optimizer_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]: ...
    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path, state: dict[str, Any]) -> None: ...


class SingleProcess:
    """One process: the model as it is."""

    optimizer_format = LOCAL_FORMAT

    def __init__(self, dist: Optional[Dist] = None):
        self.dist = self.eval_shard = dist or Dist()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def gradient_sync(self, model: torch.nn.Module, enabled: bool) -> ContextManager[None]:
        return nullcontext()  # nothing to sync

    def full_weights(self, model: torch.nn.Module) -> Optional[dict[str, torch.Tensor]]:
        """None: the (unwrapped) model's own state dict is whole."""
        return None

    def optimizer_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path, state: dict[str, Any]) -> None:
        """Weights from `folder` and the optimizer state from `state` (a resumable checkpoint's trainer state)."""
        _load_local(self, model, optimizer, folder, state)


class DataParallel:
    """DDP: a replica per process; gradients all-reduced in the backward pass."""

    optimizer_format = LOCAL_FORMAT

    def __init__(self, dist: Dist):
        self.dist = self.eval_shard = dist

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model

    def gradient_sync(self, model: torch.nn.Module, enabled: bool) -> ContextManager[None]:
        """With `enabled=False` the backward pass skips the all-reduce (`no_sync`); the last micro-batch syncs all."""
        return nullcontext() if enabled else model.no_sync()  # type: ignore[operator]

    def full_weights(self, model: torch.nn.Module) -> Optional[dict[str, torch.Tensor]]:
        return None  # every replica is whole

    def optimizer_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path, state: dict[str, Any]) -> None:
        _load_local(self, model, optimizer, folder, state)


class FullyShardedDataParallel:
    """FSDP2: each transformer block sharded over the processes, then the root. Every forward needs every rank, so
    every rank runs the same eval batches, and gathering the full state is a collective."""

    optimizer_format = FULL_FORMAT

    def __init__(self, dist: Dist):
        self.dist = dist
        self.eval_shard = Dist()  # this rank alone: it scores every eval batch

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.distributed.fsdp import fully_shard

        for layer in _layers(model):
            fully_shard(layer)
        fully_shard(model)
        return model

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model  # sharded in place: the same module, its parameters DTensors

    @contextmanager
    def _no_sync(self, model: torch.nn.Module) -> Iterator[None]:
        model.set_requires_gradient_sync(False)  # type: ignore[operator]
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)  # type: ignore[operator]

    def gradient_sync(self, model: torch.nn.Module, enabled: bool) -> ContextManager[None]:
        """With `enabled=False` the backward pass skips the reduce-scatter; the last micro-batch syncs all."""
        return nullcontext() if enabled else self._no_sync(model)

    def full_weights(self, model: torch.nn.Module) -> Optional[dict[str, torch.Tensor]]:
        return full_state_dict(model)  # a collective: every rank gathers

    def optimizer_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return full_optimizer_state(model, optimizer)  # a collective

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path, state: dict[str, Any]) -> None:
        """Every rank loads the full weights and optimizer state and keeps its shard."""
        from safetensors.torch import load_file
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

        _check_format(self, folder, state)
        full = StateDictOptions(full_state_dict=True, strict=False)  # tied weights are stored once
        set_model_state_dict(model, load_file(folder / "model.safetensors"), options=full)
        set_optimizer_state_dict(model, optimizer, state["optimizer"], options=full)


def build_strategy(kind: config.Strategy, dist: Dist) -> Strategy:
    """The strategy `trainer.strategy` names for this process group; one process is always `SingleProcess`."""
    if not dist.enabled:
        return SingleProcess(dist)
    if kind is config.Strategy.fsdp:
        return FullyShardedDataParallel(dist)
    return DataParallel(dist)


def _check_format(strategy: Strategy, folder: Path, state: dict[str, Any]) -> None:
    if state.get("optimizer_format", LOCAL_FORMAT) != strategy.optimizer_format:
        written = "an FSDP run" if strategy.optimizer_format == LOCAL_FORMAT else "a run without FSDP"

        raise UserError(f"{folder} was written by {written}; resume it with the trainer.strategy it was trained with")


def _load_local(
    strategy: Strategy, model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path, state: dict[str, Any]
) -> None:
    _check_format(strategy, folder, state)
    load_weights(folder, strategy.unwrap(model))
    optimizer.load_state_dict(state["optimizer"])


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on CPU (a collective under FSDP: every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The whole optimizer state keyed by parameter name, on CPU (a collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
