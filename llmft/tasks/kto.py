"""Kahneman-Tversky optimisation (task=kto) on unpaired rows {prompt, completion, label: true|false}.

Each row's implicit reward is beta x (policy - reference) completion log-prob; the reference point is the KL estimate
of the batch: the same log-ratio on mismatched pairs (each prompt with the next row's completion, built once when the
data is prepared), averaged over the micro-batch and clamped at 0, no gradient. Desirable rows lose
w_D (1 - sigmoid(beta (r - KL))), undesirable ones w_U (1 - sigmoid(beta (KL - r))), as TRL's KTOTrainer computes it
(the KL estimate is per micro-batch there too, so accumulation is not the same as a bigger batch). The reference is
settled as for task=dpo (tasks/reference.py); afterwards the run is a causal LM."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from llmft.data.loading import check_columns
from llmft.engine.token_loss import IGNORE, sequence_logps
from llmft.errors import UserError
from llmft.models.eval_mode import eval_mode
from llmft.tasks.base import PlainHead
from llmft.tasks.options import KTOOptions
from llmft.tasks.preference import completion_targets
from llmft.tasks.preference_data import PairEncoder, located, pad_rows, pair_id
from llmft.tasks.reference import Reference
from llmft.tasks.text_common import Example, generative_predict
from llmft.tasks.text_common import renders_chat

SIDES = ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected")
SUMS = ("loss", *SIDES, "kl", "count/chosen", "count/rejected", "count/kl")


def row_sums(rewards: torch.Tensor, logps: torch.Tensor, kl: torch.Tensor, good: torch.Tensor) -> dict[str, torch.Tensor]:
    """One micro-batch's sums: rewards and policy log-probs of its desirable (`chosen`) and undesirable (`rejected`)
    rows with their counts, and its KL estimate with a count of 1 (every name present, zero where a side is absent)."""
    bad = ~good
    return {
        "rewards/chosen": rewards[good].sum(),
        "rewards/rejected": rewards[bad].sum(),
        "logps/chosen": logps[good].sum(),
        "logps/rejected": logps[bad].sum(),
        "kl": kl,
        "count/chosen": good.sum(),
        "count/rejected": bad.sum(),
        "count/kl": torch.ones((), device=kl.device),
    }


def _label(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"label must be true or false, got {value!r}")


def kto_collator(tokenizer: Any) -> Any:
    """Rows -> 2B sequences: the rows' own completions, then the mismatched (KL) ones; `desirable` per row."""

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [r["input_ids"][0] for r in rows] + [r["input_ids"][1] for r in rows]
        labels = [r["labels"][0] for r in rows] + [r["labels"][1] for r in rows]
        width = max(len(x) for x in ids)
        return {
            "input_ids": torch.tensor(pad_rows(ids, tokenizer.pad_token_id)),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
            "labels": torch.tensor(pad_rows(labels, IGNORE)),
            "pair": torch.tensor([r["pair"] for r in rows]),
            "desirable": torch.tensor([r["desirable"] for r in rows]),
        }

    return collate


@dataclass
class KTOTask(PlainHead):
    cfg: KTOOptions
    tokenizer: Any = None  # bound when the task is built (tasks.get_task)
    max_length: int = 512  # model.max_length: rows are cut to it
    features: dict[str, Any] = field(default_factory=dict)
    data_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    reference: Reference = field(default_factory=Reference)

    auto_class_name = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    pipeline_tag = "text-generation"
    serve_kind = "generate"  # /v1/chat/completions and /v1/completions
    packs = False
    per_row_loss = False  # rows coupled in the loss (or a reference forward): no adversarial training or DP-SGD
    train_by_length = False
    batch_by_tokens = False
    eval_order_free = True
    streams = True

    @property
    def chat(self) -> bool:
        return renders_chat(self.cfg.use_chat_template, self.tokenizer)

    @property
    def prompt_has_special_tokens(self) -> bool:
        return self.chat

    def plan_info(self) -> dict[str, Any]:
        return {
            "format": "unpaired completions (KTO)",
            "beta": self.cfg.beta,
            "chat_template": self.chat,
            "data": self.data_stats,
        }

    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        tokenizer, max_length = self.tokenizer, self.max_length
        tokenizer.padding_side = "right"
        cfg, encoder = self.cfg, PairEncoder(tokenizer, max_length, self.cfg.use_chat_template)
        for role, ds in splits.items():
            check_columns(
                ds, [cfg.prompt_column, cfg.completion_column, cfg.label_column], f"the {role} split of '{cfg.data.path}'"
            )
            completions = ds[cfg.completion_column]

            def encode(
                row: dict[str, Any], index: int, role: str = role, ds: Any = ds, completions: list = completions
            ) -> dict[str, Any]:
                try:
                    prompt, completion = row[cfg.prompt_column], row[cfg.completion_column]
                    if not completion or not prompt:
                        raise ValueError(f"'{cfg.completion_column if not completion else cfg.prompt_column}' is missing")
                    desirable = _label(row[cfg.label_column])
                    ids, labels = encoder.encode(prompt, completion)
                    kl_ids, kl_labels = encoder.encode(prompt, completions[(index + 1) % len(completions)] or completion)
                except ValueError as ex:
                    raise located(ds, index, role, cfg.data, str(ex)) from None
                return {
                    "input_ids": [ids, kl_ids],
                    "labels": [labels, kl_labels],
                    "desirable": desirable,
                    "pair": pair_id(role, index),
                }

            self.features[role] = ds.map(encode, with_indices=True, remove_columns=ds.column_names, desc=f"tokenize {role}")
            self.data_stats[role] = {"rows": len(ds), "desirable": int(sum(self.features[role]["desirable"]))}
        return self.features

    def collator(self, tokenizer: Any) -> Any:
        return kto_collator(tokenizer)

    @staticmethod
    def count(batch: dict[str, torch.Tensor]) -> int:
        return int(batch["pair"].shape[0])

    def bind_model(self, model: Any, run_dir: Optional[Path]) -> None:
        self.reference.bind(model, self.features, self.reference_batches, self.scores, run_dir, False)

    def needs_reference(self) -> bool:
        return True

    def bind_reference(self, initial: Any) -> None:
        """`llmft eval`: the run's initial model, rebuilt, scores the prepared rows once; the caller then frees it."""
        self.reference.bind(initial, self.features, self.reference_batches, self.scores, None, precompute=True)

    def reference_batches(self, features: Any) -> Iterable[dict[str, torch.Tensor]]:
        collate = self.collator(self.tokenizer)
        return (collate([features[j] for j in range(i, min(i + 8, len(features)))]) for i in range(0, len(features), 8))

    def scores(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(rows, 2): summed completion log-probs of each row's completion and of its mismatched (KL) one."""
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        return sequence_logps(model, inputs, completion_targets(batch), chunked=self.cfg.chunked_loss).view(2, -1).t()

    def row_terms(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """(losses, rewards, policy logps, KL estimate) per row of the batch."""
        rows = batch["pair"].shape[0]
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        targets = completion_targets(batch)
        policy = sequence_logps(model, {k: v[:rows] for k, v in inputs.items()}, targets[:rows], chunked=self.cfg.chunked_loss)
        with torch.no_grad():  # the KL estimate carries no gradient (TRL's _compute_kl_logps)
            policy_kl = sequence_logps(
                model, {k: v[rows:] for k, v in inputs.items()}, targets[rows:], chunked=self.cfg.chunked_loss
            )
        ref = self.reference.values(model, batch, self.scores)
        if ref is None:
            raise UserError("task=kto needs the reference model, which this command did not set up")
        ref = ref.to(policy)
        kl = (policy_kl - ref[:, 1]).mean().clamp(min=0).detach()
        ratio = policy - ref[:, 0]
        good = batch["desirable"].bool()
        losses = torch.where(
            good,
            self.cfg.desirable_weight * (1 - torch.sigmoid(self.cfg.beta * (ratio - kl))),
            self.cfg.undesirable_weight * (1 - torch.sigmoid(self.cfg.beta * (kl - ratio))),
        )
        return losses, self.cfg.beta * ratio.detach(), policy.detach(), kl

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.row_terms(model, batch)[0].sum()

    def loss_terms(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The summed loss, and the sums the train log shows as TRL's KTOTrainer does: rewards and log-probs as means
        over the desirable (`chosen`) and undesirable (`rejected`) rows, the KL estimate as a mean over micro-batches."""
        losses, rewards, logps, kl = self.row_terms(model, batch)
        return losses.sum(), row_sums(rewards, logps, kl, batch["desirable"].bool())

    @torch.no_grad()
    def eval_partial(
        self, model: Any, batches: Iterable[dict[str, torch.Tensor]], precision: Any, role: str = "eval", dist: Any = None
    ) -> dict[str, Any]:
        sums: dict[str, float] = {}
        with eval_mode(model):
            for batch in batches:
                batch = {k: v.to(precision.device, non_blocking=True) for k, v in batch.items()}
                with precision.autocast():
                    losses, rewards, logps, kl = (t.float() for t in self.row_terms(model, batch))
                values = {"loss": losses.sum(), **row_sums(rewards, logps, kl, batch["desirable"].bool())}
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
        return {"sums": sums}

    def eval_metrics(self, partials: list[dict[str, Any]], role: str = "eval") -> dict[str, Any]:
        total = {k: sum(p["sums"].get(k, 0.0) for p in partials) for k in SUMS}
        good, bad = total["count/chosen"], total["count/rejected"]
        rows = int(good + bad)
        if rows == 0:
            raise UserError("evaluation saw no rows; check the eval split and trainer.limit_eval_batches")
        metrics: dict[str, Any] = {"loss": total["loss"] / rows, "kl": total["kl"] / max(total["count/kl"], 1)}
        for side, n in (("chosen", good), ("rejected", bad)):
            if n:
                metrics[f"rewards/{side}"] = total[f"rewards/{side}"] / n
                metrics[f"logps/{side}"] = total[f"logps/{side}"] / n
        if good and bad:
            metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
        metrics["rows"] = rows
        return metrics

    def generation_prompt(self, example: Example) -> str:
        if not self.chat:
            return example.prompt.rstrip(" ")
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": example.prompt}], tokenize=False, add_generation_prompt=True
        ).rstrip(" ")

    predict = generative_predict
