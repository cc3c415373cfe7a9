"""Adversarial training on the word embeddings (finetune.adversarial=fgm|pgd): a LossFn that wraps the task's.

Each row's word-embedding output is moved by a perturbation `delta` of L2 norm at most epsilon (over all its tokens)
along the gradient of the loss; the step trains on the mean of the clean and the perturbed loss. FGM takes one
normalised step of length epsilon (Miyato et al., 2017); PGD takes `steps` normalised steps of length alpha, each
projected back into the epsilon ball (Madry et al., 2018). The perturbation is found with `torch.autograd.grad` on
`delta` alone, so parameter gradients come only from the returned loss: accumulation, the GradScaler and DDP's sync
see one ordinary backward per micro-batch.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from llmft.config import Adversarial, FinetuneConfig
from llmft.errors import UserError

Batch = dict[str, torch.Tensor]


class EmbeddingShift:
    """A forward hook on the input-embedding layer that adds `delta` to its output while one is set. `probe()` makes a
    zero delta that requires grad, created at the output's shape on the next forward."""

    def __init__(self, embeddings: torch.nn.Module):
        self.delta: Optional[torch.Tensor] = None
        self._probe = False
        self.handle = embeddings.register_forward_hook(self._shift)

    def _shift(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> Optional[torch.Tensor]:
        if self._probe:
            self.delta = torch.zeros_like(output, dtype=torch.float32, requires_grad=True)
            self._probe = False
        if self.delta is None:
            return None
        return output + self.delta.to(output.dtype)

    def probe(self) -> None:
        self.delta, self._probe = None, True

    def set(self, delta: Optional[torch.Tensor]) -> None:
        self.delta, self._probe = delta, False


def _per_row_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.ndim - 1)))


def _direction(loss: torch.Tensor, delta: torch.Tensor, retain: bool) -> torch.Tensor:
    """The loss gradient with respect to `delta`, scaled to unit L2 norm per row (zero where it is not finite)."""
    (grad,) = torch.autograd.grad(loss, delta, retain_graph=retain)
    grad = torch.nan_to_num(grad.float(), nan=0.0, posinf=0.0, neginf=0.0)
    return grad / _per_row_norm(grad)


def _project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Back into the ball of radius epsilon, row by row."""
    return delta * (epsilon / _per_row_norm(delta)).clamp(max=1.0)


class AdversarialLoss:
    """The task's LossFn with an adversarial term: (clean + perturbed) / 2, both summed over the batch's items."""

    def __init__(self, inner: Any, cfg: FinetuneConfig, embeddings: torch.nn.Module):
        self.inner, self.kind, self.epsilon = inner, cfg.adversarial, cfg.adversarial_epsilon
        self.steps = cfg.adversarial_steps if cfg.adversarial is Adversarial.pgd else 1
        self.alpha = cfg.adversarial_alpha or 2.5 * self.epsilon / self.steps
        self.shift = EmbeddingShift(embeddings)

    def count(self, batch: Batch) -> int:
        return self.inner.count(batch)

    def loss_sum(self, model: Any, batch: Batch) -> torch.Tensor:
        self.shift.probe()
        clean = self.inner.loss_sum(model, batch)
        probe = self.shift.delta
        if probe is None:  # the forward never reached the embedding layer
            raise UserError("finetune.adversarial: the model's input-embedding layer did not run in the forward pass")
        delta = self._perturbation(model, batch, clean, probe)
        self.shift.set(delta.detach())
        try:
            perturbed = self.inner.loss_sum(model, batch)
        finally:
            self.shift.set(None)
        return (clean + perturbed) / 2

    def _perturbation(self, model: Any, batch: Batch, clean: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
        if self.kind is Adversarial.fgm:
            return self.epsilon * _direction(clean, probe, retain=True)
        delta = _project(self.alpha * _direction(clean, probe, retain=True), self.epsilon)
        for _ in range(self.steps - 1):
            delta = delta.detach().requires_grad_(True)
            self.shift.set(delta)
            loss = self.inner.loss_sum(model, batch)
            delta = _project(delta + self.alpha * _direction(loss, delta, retain=False), self.epsilon)
        return delta

    def close(self) -> None:
        """Take the hook off the model (eval and the saved checkpoint never see it: no delta is set outside a step)."""
        self.shift.handle.remove()


def check_supported(family: str, per_row_loss: bool, processes: int) -> None:
    """Refuse, in one line, what the perturbation cannot do (before anything loads)."""
    if not per_row_loss:
        raise UserError(
            f"finetune.adversarial perturbs one forward of per-row losses; task family {family} does not train that way"
        )
    if processes > 1:  # DDP's reducer expects each forward's backward to reduce; the probe's autograd.grad does not
        raise UserError(
            "finetune.adversarial runs in one process: its extra forward passes per step do not fit DDP's or "
            "FSDP's one-forward-one-backward gradient sync"
        )


def wrap(loss_fn: Any, cfg: FinetuneConfig, model: Any) -> Any:
    """The loss the loop trains on: the task's, or its adversarial wrapper when finetune.adversarial is set."""
    if cfg.adversarial is None:
        return loss_fn
    embeddings = model.get_input_embeddings()
    if embeddings is None:
        raise UserError(f"finetune.adversarial: {type(model).__name__} has no input-embedding layer to perturb")
    return AdversarialLoss(loss_fn, cfg, embeddings)
