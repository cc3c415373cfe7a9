"""Labels and probabilities (or a one-output head's score) for rows of text(s): what `llmft generate` on a classifier,
`/v1/classify` and the ONNX runner print, cut exactly as training cut them."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from llmft.config import Side
from llmft.data.truncation import bounded_piece, char_budget, truncating_on


@torch.no_grad()
def classify(
    model: Any,
    tokenizer: Any,
    rows: list[list[str]],
    batch_size: int,
    max_length: int,
    device: torch.device,
    side: Side = Side.right,
) -> list[dict[str, Any]]:
    """Label name (from the model's id2label) and class probabilities for each row of text(s), truncated on `side`
    (the training side) from bounded pieces of the texts."""
    model.eval()

    def logits_of(enc: dict[str, np.ndarray]) -> np.ndarray:
        return model(**{k: torch.from_numpy(v).to(device) for k, v in enc.items()}).logits.float().cpu().numpy()

    return classify_with(logits_of, model.config.id2label, tokenizer, rows, batch_size, max_length, side)


def classify_with(
    logits_of: Callable[[dict[str, np.ndarray]], np.ndarray],
    id2label: dict[Any, str],
    tokenizer: Any,
    rows: list[list[str]],
    batch_size: int,
    max_length: int,
    side: Side = Side.right,
) -> list[dict[str, Any]]:
    """`classify` for any runner of the classifier (the PyTorch model, an ONNX session): `logits_of` maps a padded
    batch of numpy int64 inputs to its logits; the texts are cut and the logits read exactly as `classify` does."""
    id2label = {int(k): v for k, v in id2label.items()}
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        columns = [[bounded_piece(t, char_budget(max_length), side)[0] for t in c] for c in zip(*chunk)]
        with truncating_on(tokenizer, side):
            enc = tokenizer(*columns, truncation=True, max_length=max_length, padding=True, return_tensors="np")
        logits = torch.from_numpy(np.asarray(logits_of({k: v.astype(np.int64) for k, v in enc.items()}), dtype=np.float32))
        if logits.shape[-1] == 1:  # a one-output (regression) head: its raw value, as transformers' pipeline gives it
            out.extend({"label": id2label.get(0, "LABEL_0"), "score": float(v)} for v in logits[:, 0].tolist())
            continue
        for p in torch.softmax(logits, dim=-1).tolist():
            best = max(range(len(p)), key=p.__getitem__)
            out.append({"label": id2label[best], "score": p[best], "probabilities": {id2label[i]: v for i, v in enumerate(p)}})
    return out
