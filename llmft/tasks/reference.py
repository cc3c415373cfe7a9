"""The reference policy of the preference losses: the frozen initial model, in eval mode, without gradients.

Under LoRA it is the policy itself with its adapter switched off (peft's `disable_adapter()`): no second copy of the
weights. Under full fine-tuning it is a frozen copy taken before the first step, unless its log-probs are scored once
before training (`task.precompute_reference=true`), stored with the run (`reference_logps.pt`, so a resumed run reads
them instead of scoring again) and the model is never copied. The eval and test rows are always scored once at the
start: the test split is scored after training by the best checkpoint alone (merged, no adapter to switch off)."""

from __future__ import annotations

import copy
import os
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from llmft.engine.token_loss import inner_model
from llmft.runs.run_folder import RunFolder
from llmft.models.eval_mode import eval_mode
from llmft.tasks.preference_data import ROLE_CODES, ROLE_STRIDE

STORE = "reference_logps.pt"
Scorer = Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]  # (model, batch) -> per-row values, (rows, k)


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off in the policy (and so in its reference): the log-ratios at step 0 are exactly zero (TRL does it)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


class Reference:
    """Where the reference's values of a batch come from: the stored table, the adapter-disabled policy, or the copy."""

    def __init__(self) -> None:
        self.copy: Optional[torch.nn.Module] = None
        self.adapters = False
        self.bound = False
        self.table: dict[int, torch.Tensor] = {}  # role code -> (rows, k) values scored before training

    def bind(
        self,
        model: Any,
        features: dict[str, Any],
        loaders: Callable[[Any], Any],
        score: Scorer,
        run_dir: Optional[Path],
        precompute: bool,
    ) -> None:
        """Settle the reference for a freshly built policy (initial weights, before any step or restore): the stored
        table when the run has one, else score the rows it covers; keep a frozen copy only when it must."""
        disable_dropout(model)
        inner = inner_model(model)
        self.adapters, self.bound = hasattr(inner, "disable_adapter"), True
        store = run_dir / STORE if run_dir is not None else None
        roles = [r for r in features if r != "train" or precompute]
        if store is not None and store.is_file():
            self.table = {int(k): v for k, v in torch.load(store, map_location="cpu").items()}
        if any(ROLE_CODES[r] not in self.table for r in roles):
            with self.context(inner):
                for role in roles:
                    self.table[ROLE_CODES[role]] = torch.cat([score(inner, b).detach().cpu() for b in loaders(features[role])])
            if store is not None and store.parent.is_dir():
                tmp = RunFolder.temp_file(store)
                torch.save({str(k): v for k, v in self.table.items()}, tmp)
                os.replace(tmp, store)
        if not self.adapters and not precompute:
            self.copy = copy.deepcopy(inner).eval().requires_grad_(False)  # full fine-tuning: unavoidable

    @contextmanager
    def context(self, model: Any) -> Iterator[Any]:
        """`model` as the reference: no gradients, eval mode, the adapter off when it has one."""
        off = model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()
        with torch.no_grad(), eval_mode(model), off:
            yield model

    def stored(self, pairs: torch.Tensor) -> Optional[torch.Tensor]:
        """The table's rows for these pair ids, or None when any is missing."""
        ids = pairs.tolist()
        codes = {i // ROLE_STRIDE for i in ids}
        if not codes <= self.table.keys():
            return None
        return torch.stack([self.table[i // ROLE_STRIDE][i % ROLE_STRIDE] for i in ids])

    def values(self, policy: Any, batch: dict[str, torch.Tensor], score: Scorer) -> Optional[torch.Tensor]:
        """The reference's values for `batch` (per pair), or None when no reference is at hand (`llmft eval`)."""
        stored = self.stored(batch["pair"])
        if stored is not None:
            return stored.to(batch["input_ids"].device)
        if self.copy is not None:
            with self.context(self.copy):
                return score(self.copy, batch)
        inner = inner_model(policy)
        if self.adapters and hasattr(inner, "disable_adapter"):
            with self.context(inner):
                return score(inner, batch)
        return None
