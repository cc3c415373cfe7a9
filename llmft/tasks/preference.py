"""Preference tuning of a decoder (task=dpo): DPO and IPO/hinge against the frozen initial policy, SimPO and ORPO
without one. Chosen and rejected go through one forward of the concatenated batch; log-probs are summed over the
completion tokens only (engine/token_loss.sequence_logps: no batch x tokens x vocabulary logits). Afterwards the run
is a causal LM like an SFT run: `llmft generate`, `serve` and `export` treat it as one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
import torch.nn.functional as F

from llmft.data.loading import check_columns
from llmft.engine.token_loss import IGNORE, sequence_logps
from llmft.errors import UserError
from llmft.models.eval_mode import eval_mode
from llmft.tasks.base import PlainHead
from llmft.tasks.options import PreferenceOptions
from llmft.tasks.preference_data import PairEncoder, located, pad_rows, pair_id, split_pair, value_of
from llmft.tasks.preference_losses import PairLogps, pair_losses
from llmft.tasks.reference import Reference
from llmft.tasks.text_common import Example, generative_predict
from llmft.tasks.text_common import renders_chat
from llmft.tasks.base import Task

METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracy", "logps/chosen", "logps/rejected")


def pair_values(chosen: torch.Tensor, rejected: torch.Tensor, policy: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per pair: the implicit rewards, their margin, whether chosen wins, and the policy's summed log-probs."""
    chosen, rejected = chosen.float(), rejected.float()
    return {
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": chosen - rejected,
        "rewards/accuracy": (chosen > rejected).float(),
        "logps/chosen": policy[:, 0],
        "logps/rejected": policy[:, 1],
    }


def completion_targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token targets: position t predicts token t + 1 (prompt and padding are IGNORE)."""
    return F.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE)


def pair_collator(tokenizer: Any) -> Any:
    """Pairs (`input_ids`/`labels`: [chosen, rejected]) -> one batch of 2B rows (the chosen completions, then the rejected), right-padded; `pair` their ids."""

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [r["input_ids"][0] for r in rows] + [r["input_ids"][1] for r in rows]
        labels = [r["labels"][0] for r in rows] + [r["labels"][1] for r in rows]
        width = max(len(x) for x in ids)
        return {
            "input_ids": torch.tensor(pad_rows(ids, tokenizer.pad_token_id)),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
            "labels": torch.tensor(pad_rows(labels, IGNORE)),
            "pair": torch.tensor([r["pair"] for r in rows]),
        }

    return collate


def encode_pairs(task: Task, splits: dict[str, Any], tokenizer: Any, max_length: int, add_eos: bool) -> dict[str, Any]:
    """Each split's pair rows tokenized (chosen/rejected ids and labels, pair ids); a bad row is one line naming it."""
    cfg = task.cfg
    encoder = PairEncoder(tokenizer, max_length, cfg.use_chat_template, add_eos)
    out = {}
    for role, ds in splits.items():
        check_columns(ds, [cfg.chosen_column, cfg.rejected_column], f"the {role} split of '{cfg.data.path}'")
        prompt_column = cfg.prompt_column if cfg.prompt_column in ds.column_names else None

        def encode(row: dict[str, Any], index: int, role: str = role, ds: Any = ds) -> dict[str, Any]:
            try:
                prompt, chosen, rejected, raw = split_pair(
                    value_of(row, prompt_column), row[cfg.chosen_column], row[cfg.rejected_column]
                )
                chosen_ids, chosen_labels = encoder.encode(prompt, chosen, raw)
                rejected_ids, rejected_labels = encoder.encode(prompt, rejected, raw)
            except ValueError as ex:
                raise located(ds, index, role, cfg.data, str(ex)) from None
            return {
                "input_ids": [chosen_ids, rejected_ids],
                "labels": [chosen_labels, rejected_labels],
                "pair": pair_id(role, index),
            }

        out[role] = ds.map(encode, with_indices=True, remove_columns=ds.column_names, desc=f"tokenize {role}")
        task.data_stats[role] = {"pairs": len(out[role])}
    return out


@dataclass
class PreferenceTask(PlainHead):
    cfg: PreferenceOptions
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
            "format": "preference pairs",
            "loss": self.cfg.loss.value,
            "beta": self.cfg.beta,
            "chat_template": self.chat,
            "data": self.data_stats,
        }

    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        tokenizer, max_length = self.tokenizer, self.max_length
        tokenizer.padding_side = "right"
        self.features = encode_pairs(self, splits, tokenizer, max_length, add_eos=True)
        return self.features

    def collator(self, tokenizer: Any) -> Any:
        return pair_collator(tokenizer)

    @staticmethod
    def count(batch: dict[str, torch.Tensor]) -> int:
        return int(batch["pair"].shape[0])  # the loss is a sum over pairs

    # --- the reference ------------------------------------------------------------------------
    def bind_model(self, model: Any, run_dir: Optional[Path]) -> None:
        """Settle the reference for the freshly built policy (tasks/reference.py)."""
        if not self.cfg.reference_free:
            self.reference.bind(
                model, self.features, self.reference_batches, self.pair_scores, run_dir, self.cfg.precompute_reference
            )

    def needs_reference(self) -> bool:
        return not self.cfg.reference_free

    def bind_reference(self, initial: Any) -> None:
        """`llmft eval`: the run's initial model, rebuilt, scores the prepared rows once; the caller then frees it."""
        self.reference.bind(initial, self.features, self.reference_batches, self.pair_scores, None, precompute=True)

    def reference_batches(self, features: Any) -> Iterable[dict[str, torch.Tensor]]:
        collate = self.collator(self.tokenizer)
        return (collate([features[j] for j in range(i, min(i + 8, len(features)))]) for i in range(0, len(features), 8))

    def pair_scores(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(pairs, 2): the summed completion log-probs of chosen and rejected under `model`, one forward."""
        device = next(model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        logps = sequence_logps(model, inputs, completion_targets(batch), chunked=self.cfg.chunked_loss)
        return logps.view(2, -1).t()

    # --- loss and metrics ---------------------------------------------------------------------
    def pair_terms(self, model: Any, batch: dict[str, torch.Tensor]) -> Optional[tuple[torch.Tensor, ...]]:
        """(losses, chosen rewards, rejected rewards, policy logps (pairs, 2)); None without a reference."""
        policy = self.pair_scores(model, batch)
        tokens = (completion_targets(batch) != IGNORE).sum(-1).view(2, -1).t().to(policy.dtype)
        if self.cfg.reference_free:
            ref = torch.zeros_like(policy)
        else:
            ref = self.reference.values(model, batch, self.pair_scores)
            if ref is None:
                return None
        lp = PairLogps(policy[:, 0], policy[:, 1], ref[:, 0].to(policy), ref[:, 1].to(policy), tokens[:, 0], tokens[:, 1])
        losses, chosen, rejected = pair_losses(lp, self.cfg)
        return losses, chosen, rejected, policy.detach()

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_terms(model, batch)[0]

    def loss_terms(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The summed loss, and the sums the train log shows as means per pair (rewards, margins, accuracy, log-probs)."""
        terms = self.pair_terms(model, batch)
        if terms is None:
            raise UserError(f"task.loss={self.cfg.loss.value} needs the reference model, which this command did not set up")
        losses, chosen, rejected, policy = terms
        return losses.sum(), {key: value.sum() for key, value in pair_values(chosen, rejected, policy).items()}

    @torch.no_grad()
    def eval_partial(
        self, model: Any, batches: Iterable[dict[str, torch.Tensor]], precision: Any, role: str = "eval", dist: Any = None
    ) -> dict[str, Any]:
        sums = dict.fromkeys(METRICS, 0.0)
        pairs, scored = 0, True
        with eval_mode(model):
            for batch in batches:
                batch = {k: v.to(precision.device, non_blocking=True) for k, v in batch.items()}
                with precision.autocast():
                    terms = self.pair_terms(model, batch)
                    policy = terms[3] if terms is not None else self.pair_scores(model, batch)
                scored = scored and terms is not None
                values = {"logps/chosen": policy[:, 0], "logps/rejected": policy[:, 1]}
                if terms is not None:
                    values = {"loss": terms[0], **pair_values(*terms[1:])}
                for key, value in values.items():
                    sums[key] += float(value.float().sum())
                pairs += int(batch["pair"].shape[0])
        return {"sums": sums, "pairs": pairs, "scored": scored}

    def eval_metrics(self, partials: list[dict[str, Any]], role: str = "eval") -> dict[str, Any]:
        """Means over every pair of every shard; `accuracy` is rewards/accuracy (chosen rewarded above rejected)."""
        pairs = sum(p["pairs"] for p in partials)
        if pairs == 0:
            raise UserError("evaluation saw no pairs; check the eval split and trainer.limit_eval_batches")
        keys = METRICS if all(p["scored"] for p in partials) else ("logps/chosen", "logps/rejected")
        metrics: dict[str, Any] = {k: sum(p["sums"][k] for p in partials) / pairs for k in keys}
        if "rewards/accuracy" in metrics:
            metrics["accuracy"] = metrics["rewards/accuracy"]
        metrics["pairs"] = pairs
        return metrics

    # --- generation: as a causal LM -------------------------------------------------------------
    def generation_prompt(self, example: Example) -> str:
        if not self.chat:
            return example.prompt.rstrip(" ")
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": example.prompt}], tokenize=False, add_generation_prompt=True
        ).rstrip(" ")

    predict = generative_predict  # llmft generate: the rows with their generations, as for an SFT run
