"""Knowledge distillation's loss: `alpha * task loss + (1 - alpha) * T^2 * D(teacher || student)` on outputs softened
by the temperature T (Hinton et al.; DistilBERT). D is the forward KL by default, or the reverse KL, or the generalized
Jensen-Shannon divergence at beta = 0.5 (GKD's default). Sums, like every task loss: the loop divides by the items.

Each task family says which outputs are compared (`distill_loss_sum` in llmft/tasks); this module holds what they
share: the divergence of softened logits, the mix, the loss function the loop calls, and the token-level version for
decoders and seq2seq that holds no `(tokens, vocabulary)` logits tensor of its own: when the output layer splits off
(token_loss.SPLITTABLE) the supervised rows go through it a chunk at a time, and each chunk is recomputed in the
backward instead of kept (activation checkpointing), so at most one chunk of student and one of teacher logits exist
at any moment; otherwise (task.chunked_loss=false) each model's logits exist once, as its forward gave them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from llmft.config_types import KDLoss
from llmft.data.loaders import ROW_INDEX
from llmft.engine.teacher_cache import TeacherCache
from llmft.engine.hidden_distill import HiddenMatch
from llmft.engine.token_loss import CHUNK_ELEMENTS, IGNORE, linear_cross_entropy_sum, plain_cross_entropy_sum, split_head

JSD_BETA = 0.5


def _forward_kl(student_logp: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student): mass-covering, the classic distillation loss."""
    return (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)


def _reverse_kl(student_logp: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """KL(student || teacher): mode-seeking."""
    return _forward_kl(teacher_logp, student_logp)


def _jsd(student_logp: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """beta * KL(teacher || M) + (1 - beta) * KL(student || M), M = beta * teacher + (1 - beta) * student."""
    mixture = torch.logsumexp(torch.stack([teacher_logp + math.log(JSD_BETA), student_logp + math.log(1 - JSD_BETA)]), 0)
    return JSD_BETA * _forward_kl(mixture, teacher_logp) + (1 - JSD_BETA) * _forward_kl(mixture, student_logp)


# finetune.kd_loss -> per-row divergence over the last dimension of two log-distributions (student, teacher)
DIVERGENCES = {KDLoss.forward_kl: _forward_kl, KDLoss.reverse_kl: _reverse_kl, KDLoss.jsd: _jsd}


@dataclass(frozen=True)
class Distillation:
    """How the teacher's outputs enter the loss (finetune.temperature, finetune.alpha, finetune.kd_loss)."""

    temperature: float = 2.0
    alpha: float = 0.5
    kind: KDLoss = KDLoss.forward_kl

    def divergence_sum(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """T^2 * D(teacher || student) of the softened logits (rows, classes), summed over the rows (T^2 keeps the
        gradients' scale independent of T)."""
        t = self.temperature
        student = F.log_softmax(student_logits.float() / t, dim=-1)
        teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
        return t * t * DIVERGENCES[self.kind](student, teacher).sum()

    def mix(self, task_sum: torch.Tensor, teacher_sum: torch.Tensor) -> torch.Tensor:
        """alpha * task + (1 - alpha) * teacher term: alpha=1 is the task's loss exactly."""
        return self.alpha * task_sum + (1.0 - self.alpha) * teacher_sum

    def soft_loss_sum(self, task_sum: torch.Tensor, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """The mix for outputs compared as distributions (class or token logits, rows already selected)."""
        return self.mix(task_sum, self.divergence_sum(student_logits, teacher_logits))


class DistilledLoss:
    """The loop's loss function under finetune=distill: the task's items, and its `distill_loss_sum` with the teacher
    (eval mode, no gradients) on the same batch, or with the teacher's cached outputs for the batch's rows (the batch
    then carries their indices in the train split, ROW_INDEX)."""

    def __init__(
        self,
        task: Any,
        teacher: Union[torch.nn.Module, TeacherCache],
        distillation: Distillation,
        hidden: Optional[HiddenMatch] = None,
    ) -> None:
        self.task, self.teacher, self.distillation, self.hidden = task, teacher, distillation, hidden

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return self.task.count(batch)

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(self.teacher, TeacherCache):  # no hidden term here: setup refuses it with a cache
            rows = self.teacher.for_rows(batch[ROW_INDEX])
            batch = {k: v for k, v in batch.items() if k != ROW_INDEX}
            return self.task.distill_loss_sum(model, rows, batch, self.distillation)
        if self.hidden is None:
            return self.task.distill_loss_sum(model, self.teacher, batch, self.distillation)
        with self.hidden.watching(model, self.teacher) as (ours, theirs):
            loss = self.task.distill_loss_sum(model, self.teacher, batch, self.distillation)
        return loss + self.hidden.term(ours, theirs, batch, self.count(batch))


def teacher_logits(teacher: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The teacher's logits for `inputs`, without a graph."""
    with torch.no_grad():
        return teacher(**inputs).logits.float()


@dataclass
class _Rows:
    """A model's outputs at the supervised positions, read a chunk at a time: hidden states through the output layer
    (when it splits off), or rows of the logits the model computed."""

    flat: torch.Tensor  # (positions, hidden) with `weight`, or (positions, vocabulary) logits
    ids: torch.Tensor  # the supervised positions
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    full: torch.Tensor  # the model's hidden states (or logits) as it gave them, for the task's own cross-entropy

    def logits(self, start: int, end: int) -> torch.Tensor:
        rows = self.flat.index_select(0, self.ids[start:end])
        return (rows if self.weight is None else F.linear(rows, self.weight, self.bias)).float()

    def cross_entropy_sum(self, targets: torch.Tensor) -> torch.Tensor:
        """The task's loss exactly as `token_loss_sum` computes it (chunked or plain)."""
        if self.weight is None:
            return plain_cross_entropy_sum(self.full, targets)
        return linear_cross_entropy_sum(self.full, self.weight, self.bias, targets)


def _output_rows(model: Any, inputs: dict[str, torch.Tensor], targets: torch.Tensor, chunked: bool) -> _Rows:
    """Run `model(**inputs)` and keep its outputs; the output layer runs on zero positions when it splits off."""
    ids = (targets.reshape(-1) != IGNORE).nonzero().squeeze(1)
    head = split_head(model) if chunked else None
    if head is None:
        logits = model(**inputs, use_cache=False).logits
        return _Rows(logits.reshape(-1, logits.shape[-1]), ids.to(logits.device), None, None, logits)
    seen: dict[str, torch.Tensor] = {}

    def hook(module: torch.nn.Linear, args: tuple) -> tuple:
        seen["hidden"] = args[0]
        return (args[0][..., :0, :], *args[1:])

    handle = head.register_forward_pre_hook(hook)
    try:
        model(**inputs, use_cache=False)
    finally:
        handle.remove()
    hidden = seen["hidden"]
    return _Rows(hidden.reshape(-1, hidden.shape[-1]), ids.to(hidden.device), head.weight, head.bias, hidden)


def _chunk_divergence(student: _Rows, teacher: _Rows, start: int, end: int, distillation: Distillation) -> torch.Tensor:
    with torch.no_grad():
        teacher_chunk = teacher.logits(start, end)
    return distillation.divergence_sum(student.logits(start, end), teacher_chunk)


def token_distill_sum(
    model: Any,
    teacher: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    targets: torch.Tensor,
    distillation: Distillation,
    chunked: bool = True,
) -> torch.Tensor:
    """alpha * summed token cross-entropy + (1 - alpha) * T^2 * summed per-token divergence over the vocabulary, for
    the positions whose target is not IGNORE (causal LM: next token; seq2seq: target token)."""
    student = _output_rows(model, inputs, targets, chunked)
    with torch.no_grad():
        teacher_rows = _output_rows(teacher, inputs, targets, chunked)
    task_sum = student.cross_entropy_sum(targets)
    vocabulary = student.weight.shape[0] if student.weight is not None else student.flat.shape[-1]
    step = max(1, CHUNK_ELEMENTS // vocabulary)
    divergence_total = torch.zeros((), dtype=torch.float32, device=student.flat.device)
    for start in range(0, student.ids.shape[0], step):
        divergence_total = divergence_total + checkpoint(  # recomputed in the backward: no chunk's logits are kept
            _chunk_divergence,
            student,
            teacher_rows,
            start,
            start + step,
            distillation,
            use_reentrant=False,
            preserve_rng_state=False,
        )
    return distillation.mix(task_sum, divergence_total)
