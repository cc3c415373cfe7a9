"""Calibration: expected calibration error and temperature scaling (Guo et al., 2017, "On Calibration of Modern
Neural Networks"). Both work from class probabilities: temperature T rescales the log-probabilities, softmax(log p / T),
which equals softmax(logits / T) since log p differs from the logits by a per-row constant."""

from __future__ import annotations

from typing import Sequence

import numpy as np

ECE_BINS = 15  # equal-width confidence bins over [0, 1], as Guo et al. report ECE


def expected_calibration_error(labels: Sequence[int], probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over `bins` equal-width bins of confidence (the top class's probability): the row-weighted mean over bins
    of |accuracy - mean confidence|. Bin b holds the confidences in ((b-1)/bins, b/bins]; the first also holds 0."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / max(len(y_true), 1))


def scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities a temperature-scaled model gives."""
    log_p = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None)) / temperature
    log_p -= log_p.max(axis=1, keepdims=True)
    out = np.exp(log_p)
    return out / out.sum(axis=1, keepdims=True)


def nll(labels: Sequence[int], probs: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under the temperature-scaled probabilities."""
    p = scaled(probs, temperature)
    y_true = np.asarray(labels)
    return float(-np.log(np.clip(p[np.arange(len(y_true)), y_true], 1e-300, None)).mean())


def fit_temperature(labels: Sequence[int], probs: np.ndarray) -> float:
    """The temperature T > 0 that minimises the NLL of `labels` (L-BFGS on log T, from T = 1). The NLL is convex in
    1/T, so the optimum is unique; T = 1 is kept when nothing does better."""
    import torch

    log_p = torch.log(torch.as_tensor(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None)))
    target = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(log_p / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not np.isfinite(temperature) or nll(labels, probs, temperature) > nll(labels, probs, 1.0):
        return 1.0
    return temperature
