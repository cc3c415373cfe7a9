"""llmft: the real build (tokenizer, data, model, optimizer, loaders) and the real loop, with its speed options on."""

from __future__ import annotations

import os
import time
from typing import Any

from scenarios import Meter, Scenario, compose


class _Metered:
    """The train loader, timestamping each batch the loop takes."""

    def __init__(self, loader: Any, meter: Meter):
        self.loader, self.meter = loader, meter

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __iter__(self) -> Any:
        for batch in self.loader:
            self.meter.batch(batch)
            yield batch


def run(scenario: Scenario, start: float, options: bool = True) -> dict[str, Any]:
    from llmft.engine.distributed import Dist
    from llmft.engine.evaluation import gathered_metrics
    from llmft.commands.setup import build_run
    from llmft.config import MetricMode
    from llmft.engine.loop import Hooks, Selection, StepParts, fit

    # `--llmft` options are llmft's own: llmft-plain stays with every speed option off (options common to every
    # implementation go in `--all`)
    extra = [*scenario.llmft_overrides(options), *(os.environ.get("LLMFT_BENCH_EXTRA", "").split() if options else [])]
    config = compose(
        [
            *scenario.overrides,
            *extra,
            f"trainer.max_steps={scenario.steps}",
            "trainer.epochs=1000",
            "trainer.log_every=1000000",
            f"task.data.max_eval_samples={scenario.eval_rows}",
        ]
    )
    parts = build_run(config)
    meter = Meter(start)
    hooks = Hooks(evaluate=lambda: {"loss": 0.0}, on_best=lambda step, metrics: None)  # eval is timed on its own below
    step = StepParts(
        parts.model, parts.task, parts.optimizer, parts.scheduler, parts.scaler, parts.precision, config.trainer, parts.dist
    )
    state = fit(step, _Metered(parts.train_loader, meter), Selection("loss", MetricMode.min), hooks, parts.num_steps)
    meter.events.append((time.perf_counter(), 0, 0))  # the end of the last step
    out = meter.result(scenario.warmup, scenario.steps)
    out["params"] = sum(p.numel() for p in parts.model.parameters())
    if parts.scaler.is_enabled():  # fp16
        out.update(grad_scale=parts.scaler.get_scale(), skipped_steps=state.skipped_steps)
    gathered_metrics(
        parts.task, parts.model, iter(parts.eval_loader), parts.precision, "eval", Dist()
    )  # warm-up pass (first-touch costs)
    t0 = time.perf_counter()
    metrics = gathered_metrics(parts.task, parts.model, iter(parts.eval_loader), parts.precision, "eval", Dist())
    out["eval_samples_per_s"] = len(parts.eval_loader.dataset) / (time.perf_counter() - t0)
    out["dev"] = metrics["loss"] if scenario.dev_metric == "loss" else metrics.get("accuracy", metrics.get("loss"))
    return out
