"""A Bradley-Terry reward model (task=reward): a one-output sequence classifier scores prompt + chosen and
prompt + rejected (one forward of the concatenated batch); the loss is -log sigmoid(r_chosen - r_rejected), as TRL's
RewardTrainer computes it, and the metric the pairwise accuracy. The checkpoint loads with
`AutoModelForSequenceClassification` (num_labels=1); `llmft generate` prints a row's reward."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from llmft.data.jsonl_input import read_jsonl
from llmft.errors import UserError
from llmft.models.eval_mode import eval_mode
from llmft.tasks.base import PlainHead
from llmft.tasks.options import RewardOptions
from llmft.tasks.preference import encode_pairs, pair_collator
from llmft.tasks.preference_data import PairEncoder, split_pair

SUMS = ("loss", "accuracy", "rewards/chosen", "rewards/rejected", "rewards/margins")


def pair_rewards(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen rewards, rejected rewards): the head's one output for each of the 2B rows."""
    rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits[:, 0]
    return rewards.float().view(2, -1)


def reward_values(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per pair: whether chosen scores above rejected, both rewards, their margin."""
    return {
        "accuracy": (chosen > rejected).float(),
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": chosen - rejected,
    }


@dataclass
class RewardTask(PlainHead):
    cfg: RewardOptions
    tokenizer: Any = None  # bound when the task is built (tasks.get_task)
    max_length: int = 512  # model.max_length: rows are cut to it
    data_stats: dict[str, dict[str, int]] = field(default_factory=dict)

    auto_class_name = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"
    pipeline_tag = "text-classification"
    serve_kind = "classify"  # /v1/classify
    packs = False
    per_row_loss = False  # rows coupled in the loss (or a reference forward): no adversarial training or DP-SGD
    train_by_length = False
    batch_by_tokens = False
    eval_order_free = True
    streams = False

    def head_kwargs(self) -> dict[str, Any]:
        return {"num_labels": 1, "id2label": {0: "reward"}, "label2id": {"reward": 0}}  # /v1/classify names the value

    def plan_info(self) -> dict[str, Any]:
        return {"format": "preference pairs (reward model)", "data": self.data_stats}

    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        tokenizer, max_length = self.tokenizer, self.max_length
        tokenizer.padding_side = "right"  # the head reads the last token before the padding
        return encode_pairs(self, splits, tokenizer, max_length, add_eos=False)

    def collator(self, tokenizer: Any) -> Any:
        return pair_collator(tokenizer)

    @staticmethod
    def count(batch: dict[str, torch.Tensor]) -> int:
        return int(batch["pair"].shape[0])

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_terms(model, batch)[0]

    def loss_terms(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The summed loss, and the sums the train log shows as means per pair (accuracy, rewards, margins)."""
        chosen, rejected = pair_rewards(model, batch)
        losses = -F.logsigmoid(chosen - rejected)
        values = reward_values(chosen.detach(), rejected.detach())
        return losses.sum(), {key: value.sum() for key, value in values.items()}

    @torch.no_grad()
    def eval_partial(
        self, model: Any, batches: Iterable[dict[str, torch.Tensor]], precision: Any, role: str = "eval", dist: Any = None
    ) -> dict[str, Any]:
        sums, pairs = dict.fromkeys(SUMS, 0.0), 0
        with eval_mode(model):
            for batch in batches:
                batch = {k: v.to(precision.device, non_blocking=True) for k, v in batch.items()}
                with precision.autocast():
                    chosen, rejected = pair_rewards(model, batch)
                values = {"loss": -F.logsigmoid(chosen - rejected), **reward_values(chosen, rejected)}
                for key, value in values.items():
                    sums[key] += float(value.sum())
                pairs += len(chosen)
        return {"sums": sums, "pairs": pairs}

    def eval_metrics(self, partials: list[dict[str, Any]], role: str = "eval") -> dict[str, Any]:
        pairs = sum(p["pairs"] for p in partials)
        if pairs == 0:
            raise UserError("evaluation saw no pairs; check the eval split and trainer.limit_eval_batches")
        return {**{k: sum(p["sums"][k] for p in partials) / pairs for k in SUMS}, "pairs": pairs}

    @torch.no_grad()
    def predict(self, model: Any, request: Any) -> list[dict[str, Any]]:
        """Each row's reward: `prompt=` alone is scored as it stands; a file's rows with a completion (`completion`,
        or `chosen`/`rejected`) are scored as prompt + completion, as in training."""
        tokenizer = self.tokenizer
        encoder = PairEncoder(tokenizer, self.max_length, self.cfg.use_chat_template, add_eos=False)
        rows = [{"text": request.prompt}] if request.prompt is not None else read_jsonl(request.input, [])
        model.eval()
        results = []
        for row in rows:
            scored = {}
            for key in ("chosen", "rejected", "completion", "text"):
                if row.get(key):
                    ids = self._ids(encoder, row, key)
                    inputs = torch.tensor([ids], device=request.device)
                    scored["reward" if key in ("completion", "text") else f"reward_{key}"] = float(
                        model(input_ids=inputs).logits[0, 0]
                    )
            results.append({**row, **scored})
        return results

    def _ids(self, encoder: PairEncoder, row: dict[str, Any], key: str) -> list[int]:
        if key == "text":
            return self.tokenizer(row[key], truncation=True, max_length=self.max_length)["input_ids"]
        prompt = row.get(self.cfg.prompt_column)
        if key in ("chosen", "rejected") and row.get("chosen") and row.get("rejected"):
            prompt, chosen, rejected, raw = split_pair(prompt, row["chosen"], row["rejected"])
            return encoder.encode(prompt, chosen if key == "chosen" else rejected, raw)[0]
        return encoder.encode(prompt or "", row[key])[0]
