"""Token classification (named-entity recognition): rows of a token list and a tag list, a tag per word trained on its
first sub-word, entity-level metrics by seqeval, and entities with character spans for `llmft generate`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch

from llmft.config import DataConfig
from llmft.data.jsonl_input import read_jsonl
from llmft.data.loading import ROW_COLUMN, cached_map, check_columns, row_origin, split_source
from llmft.data.text_files import TEXT_COLUMN
from llmft.engine.distill_loss import Distillation, teacher_logits
from llmft.engine.distributed import Dist
from llmft.engine.precision import Precision
from llmft.engine.token_loss import IGNORE
from llmft.engine.token_loss import plain_cross_entropy_sum as token_loss_sum
from llmft.errors import UserError
from llmft.evaluation.entities import entity_metrics
from llmft.tasks.base import PredictRequest
from llmft.tasks.options import TokenClassificationOptions
from llmft.tasks.explanation import Target
from llmft.tasks.word_ensemble import (
    average_word_partials,
    average_words,
    entities_of,
    entity_starts,
    first_subwords,
    word_probabilities,
)

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what the model is given (not labels, word_starts)


def _tag_names(train: Any, cfg: DataConfig) -> list[str]:
    """The tag set: `label_names` when set, else the names of a Sequence(ClassLabel) column, else the train split's tag
    strings ('O' first, then by entity type and B before I)."""
    if cfg.label_names:
        return [str(n) for n in cfg.label_names]
    names = getattr(getattr(train.features[cfg.label_column], "feature", None), "names", None)
    if names:
        return list(names)
    seen = {t for tags in train[cfg.label_column] for t in tags}
    if not all(isinstance(t, str) for t in seen):
        raise UserError(
            f"tags in column '{cfg.label_column}' are integer ids; name them with task.data.label_names="
            "[O,B-PER,I-PER,...] in id order"
        )
    return sorted(seen, key=lambda t: (t != "O", t[2:], t[:2]))


def _tag_ids(ds: Any, role: str, names: list[str], cfg: DataConfig) -> list[list[int]]:
    """Each row's tags as ids; a row whose tag list is not as long as its non-empty token list, or a tag outside the
    tag set, is refused naming its line."""
    index = {name: i for i, name in enumerate(names)}
    tokens_column = cfg.text_columns[0]
    out = []
    for row, (tokens, tags) in enumerate(zip(ds[tokens_column], ds[cfg.label_column])):
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t.strip() for t in tokens):
            raise UserError(
                f"{row_origin(ds, row, role, cfg)}: '{tokens_column}' must be a non-empty list of non-empty "
                f"tokens, got {tokens!r:.80}"
            )
        if not isinstance(tags, list) or len(tags) != len(tokens):
            count = len(tags) if isinstance(tags, list) else type(tags).__name__
            raise UserError(
                f"{row_origin(ds, row, role, cfg)}: {len(tokens)} tokens but {count} tags in "
                f"'{cfg.label_column}'; give one tag per token"
            )
        ids = []
        for item, tag in enumerate(tags):
            key = names[tag] if isinstance(tag, int) and not isinstance(tag, bool) and 0 <= tag < len(names) else tag
            if key not in index:
                raise UserError(
                    f"{row_origin(ds, row, role, cfg, item)}: tag {tag!r} is not in the tag set {names}; "
                    "fix the data or set task.data.label_names"
                )
            ids.append(index[key])
        out.append(ids)
    return out


def _first_subword_labels(word_ids: list[Optional[int]], tags: list[int], all_subwords: list[int]) -> tuple[list[int], list[int]]:
    """(labels, word_starts) of one tokenized row: a word's tag on its first sub-word (on every sub-word when
    `all_subwords` maps each tag to the tag its continuations take, B-X -> I-X), IGNORE on special tokens."""
    labels, starts, previous = [], [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE), starts.append(0)
        elif word != previous:
            labels.append(tags[word]), starts.append(1)
        else:
            labels.append(all_subwords[tags[word]] if all_subwords else IGNORE), starts.append(0)
        previous = word
    return labels, starts


@dataclass
class TokenClassificationTask:
    """Everything the token-classification family knows; the loop only sees batches and a loss."""

    cfg: TokenClassificationOptions
    tokenizer: Any = None  # bound when the task is built (tasks.get_task)
    max_length: int = 512  # model.max_length: rows are cut to it
    label_names: list[str] = field(default_factory=list)
    data_stats: dict[str, dict[str, int]] = field(default_factory=dict)

    auto_class_name = "AutoModelForTokenClassification"
    peft_task_type = "TOKEN_CLS"
    pipeline_tag = "token-classification"
    serve_kind = None  # not served by llmft serve
    packs = False
    per_row_loss = True  # one forward over the rows, a sum of per-row terms: adversarial training and DP-SGD apply
    train_by_length = None  # grouped (equal tokens) where lengths vary (commands/setup.py _group_by_length, docs/speed.md)
    batch_by_tokens = True  # grouped batches hold equal tokens: the loss averages over tokens, each weighs alike
    eval_order_free = True  # micro metrics over whole sentences do not depend on their order
    streams = False

    def adapt_model(self, model: Any) -> None:
        return None  # the head trains as loaded

    def bind_model(self, model: Any, run_dir: Any) -> None:
        return None  # the loss needs nothing but the model it is given

    def checkpoint_files(self, folder: Any, model: Any) -> None:
        return None  # transformers alone loads the checkpoint (id2label included)

    @property
    def data(self) -> DataConfig:
        return self.cfg.data

    # --- data -------------------------------------------------------------------------------
    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        """Check columns and rows, fix the tag set from train, and tokenize every split (words pre-split)."""
        tokenizer, max_length = self.tokenizer, self.max_length
        if not getattr(tokenizer, "is_fast", False):
            raise UserError(
                "token classification needs a fast (Rust) tokenizer to map sub-words to words; "
                "choose a model whose tokenizer has one"
            )
        columns = [self.data.text_columns[0], self.data.label_column]
        for role, ds in splits.items():
            where = f"the {role} split of '{split_source(self.data, role)}'"
            if self.data.format is None and set(ds.column_names) - {ROW_COLUMN} == {TEXT_COLUMN}:
                raise UserError(
                    f"{where} has only a '{TEXT_COLUMN}' column (a .txt file is read as raw text, a document "
                    "per paragraph); for CoNLL columns (`token ... tag` per line) set task.data.format=conll"
                )
            check_columns(ds, columns, where)
        self.label_names = _tag_names(splits["train"], self.data) if not self.label_names else self.label_names
        out = {}
        for role, ds in splits.items():
            ds = ds.select_columns(columns).add_column("tag_ids", _tag_ids(ds, role, self.label_names, self.data))
            out[role] = self._tokenize(ds, tokenizer, max_length, role)
            truncated = int(sum(out[role]["truncated"]))
            out[role] = out[role].remove_columns("truncated")
            self.data_stats[role] = {"rows": len(out[role]), "truncated": truncated}
        return out

    def _continuation_ids(self) -> list[int]:
        """For label_all_subwords: the tag id a word's later sub-words take (B-X -> I-X when I-X exists)."""
        index = {name: i for i, name in enumerate(self.label_names)}
        return [index.get("I-" + n[2:], i) if n.startswith("B-") else i for i, n in enumerate(self.label_names)]

    def _tokenize(self, ds: Any, tokenizer: Any, max_length: int, role: str) -> Any:
        words, all_subwords = self.data.text_columns[0], self._continuation_ids() if self.cfg.label_all_subwords else []

        def encode(batch: dict[str, list]) -> dict[str, Any]:
            enc = tokenizer(batch[words], is_split_into_words=True, truncation=True, max_length=max_length)
            labels, starts, truncated = [], [], []
            for i, tags in enumerate(batch["tag_ids"]):
                word_ids = enc.word_ids(i)
                row_labels, row_starts = _first_subword_labels(word_ids, tags, all_subwords)
                labels.append(row_labels), starts.append(row_starts)
                truncated.append(sum(row_starts) < len(tags))  # words cut off: neither trained nor scored
            return {**enc, "labels": labels, "word_starts": starts, "truncated": truncated}

        key = f"token_classification|{words}|{max_length}|{self.label_names}|{self.cfg.label_all_subwords}"
        return cached_map(ds, encode, key, tokenizer, batched=True, remove_columns=ds.column_names, desc=f"tokenize {role}")

    def collator(self, tokenizer: Any) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
        """Pad on the right: ids with the pad id, labels with IGNORE, masks and word starts with 0."""
        pads = {"input_ids": tokenizer.pad_token_id, "labels": IGNORE}

        def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            width = max(len(r["input_ids"]) for r in rows)
            return {
                key: torch.tensor([list(r[key]) + [pads.get(key, 0)] * (width - len(r[key])) for r in rows]) for key in rows[0]
            }

        return collate

    def plan_info(self) -> dict[str, Any]:
        return {"labels": self.label_names, "data": self.data_stats}

    def sample_weights(self, train: Any) -> None:
        return None  # uniform sampling

    def fold_strata(self, train: Any) -> None:
        return None  # a row holds many tags: cross-validation folds from one shuffle

    # --- model ------------------------------------------------------------------------------
    def head_kwargs(self) -> dict[str, Any]:
        """The tag set of the head, in id order (the checkpoint's id2label is what the pipeline prints)."""
        id2label = dict(enumerate(self.label_names))
        return {"num_labels": len(self.label_names), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}

    def from_checkpoint(self, model: Any) -> None:
        """Score with the checkpoint's tag ids: its tag names, in id order, become the tag set."""
        id2label = {int(k): v for k, v in model.config.id2label.items()}
        self.label_names = [id2label[i] for i in range(len(id2label))]

    # --- loss and evaluation ----------------------------------------------------------------
    @staticmethod
    def count(batch: dict[str, torch.Tensor]) -> int:
        """Supervised sub-words in the batch (the loss sums over them)."""
        return int((batch["labels"] != IGNORE).sum())

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed cross-entropy over the supervised sub-words."""
        logits = model(**{k: v for k, v in batch.items() if k in MODEL_INPUTS}).logits
        return token_loss_sum(logits, batch["labels"])

    caches_teacher = True  # tag logits per real token: finetune.cache_teacher=true keeps them
    swaps_words = True  # finetune.augment: word lists with a tag per word; a copy keeps its length

    def distill_loss_sum(
        self, model: Any, teacher: Any, batch: dict[str, torch.Tensor], distillation: Distillation
    ) -> torch.Tensor:
        """The task's loss mixed with the divergence from the teacher's tag distribution, per supervised sub-word."""
        inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
        logits = model(**inputs).logits
        supervised = batch["labels"] != IGNORE
        return distillation.soft_loss_sum(
            token_loss_sum(logits, batch["labels"]), logits[supervised], teacher_logits(teacher, inputs)[supervised]
        )

    @torch.no_grad()
    def eval_partial(
        self,
        model: Any,
        batches: Iterable[dict[str, torch.Tensor]],
        precision: Precision,
        role: str = "eval",
        dist: Optional[Dist] = None,
    ) -> dict[str, Any]:
        """One shard's summed loss and, per sentence, the gold and predicted tag ids and the tag probabilities of each
        word's first sub-word (what ensembles average)."""
        was_training = model.training
        model.eval()
        total, tokens, gold, predicted, probs = 0.0, 0, [], [], []
        for batch in batches:
            batch = {k: v.to(precision.device, non_blocking=True) for k, v in batch.items()}
            with precision.autocast():
                logits = model(**{k: v for k, v in batch.items() if k in MODEL_INPUTS}).logits.float()
            total += float(token_loss_sum(logits, batch["labels"]))
            tokens += self.count(batch)
            scored = (batch["word_starts"] == 1) & (batch["labels"] != IGNORE)
            for row_scored, row_gold, row_logits in zip(scored.cpu(), batch["labels"].cpu(), logits.cpu()):
                gold.append(row_gold[row_scored].tolist())
                predicted.append(row_logits[row_scored].argmax(-1).tolist())
                probs.append(torch.softmax(row_logits[row_scored], -1).numpy())
        model.train(was_training)
        return {"loss": total, "tokens": tokens, "gold": gold, "predicted": predicted, "probs": probs}

    def eval_metrics(self, partials: list[dict[str, Any]], role: str = "eval") -> dict[str, Any]:
        """Entity-level precision/recall/F1 (micro and per type) and token accuracy by seqeval, and the loss per
        supervised sub-word, over every shard's sentences."""
        tokens = sum(p["tokens"] for p in partials)
        if tokens == 0:
            raise UserError("evaluation saw no tagged tokens; check trainer.limit_eval_batches and the eval split")
        names = self.label_names
        gold = [[names[i] for i in row] for p in partials for row in p["gold"]]
        predicted = [[names[i] for i in row] for p in partials for row in p["predicted"]]
        return {
            **entity_metrics(gold, predicted),
            "loss": sum(p["loss"] for p in partials) / tokens,
            "samples": len(gold),
            "tokens": tokens,
        }

    @staticmethod
    def ensemble_partials(members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The members' eval partials with each word's tag probabilities averaged."""
        return average_word_partials(members)

    def member_predictions(self, model: Any, request: PredictRequest) -> list[dict[str, Any]]:
        """Each text with its words' spans and tag probabilities: what an ensemble averages."""
        rows = [{"text": request.prompt}] if request.prompt is not None else read_jsonl(request.input, ["text"])  # type: ignore[arg-type]
        tokenizer = self.tokenizer
        model.eval()
        return [
            {**row, "words": word_probabilities(model, tokenizer, str(row["text"]), self.max_length, request.device)}
            for row in rows
        ]

    def ensemble_predictions(self, members: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Each text with the entities of its words' mean tag probabilities (as `predict` prints them)."""
        out = []
        for rows in zip(*members):
            words = average_words([r["words"] for r in rows])
            given = {k: v for k, v in rows[0].items() if k != "words"}
            out.append({**given, "entities": entities_of(str(given["text"]), words, self.label_names)})
        return out

    # --- llmft explain ----------------------------------------------------------------------
    def explanation_rows(self, prompt: Optional[str], input: Optional[Path]) -> list[dict[str, Any]]:
        return [{"text": prompt}] if prompt is not None else read_jsonl(input, ["text"])  # type: ignore[arg-type]

    def explanation_encoding(self, row: dict[str, Any]) -> dict[str, Any]:
        return dict(self.tokenizer(str(row["text"]), truncation=True, max_length=self.max_length, return_tensors="pt"))

    def explanation_targets(self, row: dict[str, Any], logits: Any, target: Optional[str]) -> list[Target]:
        """The tag logit of the word `target=` names (its predicted tag, on its first sub-word), or else of each
        predicted entity's first word (the first word when there is no entity)."""
        text = str(row["text"])
        words = first_subwords(self.tokenizer, text, int(logits.shape[1]))
        tags = [int(logits[0, p].argmax()) for p, _, _ in words]
        if target is not None:
            chosen = [i for i, (_, s, e) in enumerate(words) if text[s:e] == target][:1]
            if not chosen:
                raise UserError(f"target={target} is not a word of the text; its words are {[text[s:e] for _, s, e in words]}")
        else:
            chosen = entity_starts([self.label_names[t] for t in tags]) or [0]
        return [
            Target(
                lambda out, p=words[i][0], t=tags[i]: out[:, p, t],
                f"{text[words[i][1] : words[i][2]]} -> {self.label_names[tags[i]]}",
            )
            for i in chosen
        ]

    # --- llmft generate ---------------------------------------------------------------------
    def predict(self, model: Any, request: PredictRequest) -> list[dict[str, Any]]:
        """Each text (the prompt, or the input file's `text` rows) with its entities: entity_group, score, word (the
        text's own characters), start, end (character offsets), as the Hugging Face token-classification pipeline
        gives them."""
        tokenizer = self.tokenizer
        from transformers import pipeline

        rows = [{"text": request.prompt}] if request.prompt is not None else read_jsonl(request.input, ["text"])  # type: ignore[arg-type]
        # a word's tag was trained on its first sub-word: "first" reads it there; with every sub-word trained, "simple"
        strategy = "simple" if self.cfg.label_all_subwords else "first"
        tagger = pipeline(
            "token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=strategy, device=request.device
        )
        texts = [str(row["text"]) for row in rows]
        found = tagger(texts, batch_size=request.batch_size) if texts else []
        return [{**row, "entities": [_entity(text, e) for e in entities]} for row, text, entities in zip(rows, texts, found)]


def _entity(text: str, found: dict[str, Any]) -> dict[str, Any]:
    start, end = int(found["start"]), int(found["end"])
    return {
        "entity_group": found["entity_group"],
        "score": float(found["score"]),
        "word": text[start:end],
        "start": start,
        "end": end,
    }
