"""Where a training step's time goes: a bench scenario's llmft run (the real build and loop) under torch.profiler.

    python bench/gpu/profile_step.py sft-0.5b-shape --out profile.md            # packed (llmft's speed options on)
    python bench/gpu/profile_step.py sft-0.5b-shape --plain --out profile.md    # options off
    python bench/gpu/profile_step.py sft-shape-tiny --out /tmp/p.md             # the CPU dry path

Appends to --out: the shapes of the profiled batches, wall time per step, and the top operators by self device time
(CUDA) or self CPU time, with the share each takes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WAIT, WARMUP, ACTIVE = 3, 2, 4  # profiler schedule, in steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario")
    parser.add_argument("--plain", action="store_true", help="llmft's speed options (packing, grouping) off")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from llmft.commands.setup import build_run
    from llmft.config import MetricMode
    from llmft.engine.loop import Hooks, Selection, StepParts, fit
    from scenarios import SCENARIOS, compose

    scenario = SCENARIOS[args.scenario]
    steps = WAIT + WARMUP + ACTIVE
    extra = scenario.llmft_overrides(not args.plain)
    config = compose(
        [
            *scenario.overrides,
            *extra,
            f"trainer.max_steps={steps}",
            "trainer.epochs=1000",
            "trainer.log_every=1000000",
            "task.eval_generate_samples=0",
        ]
    )
    parts = build_run(config)
    cuda = parts.precision.device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    shapes, stamps = [], []
    with profile(activities=activities, schedule=schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE)) as prof:

        class Stepping:  # the train loader, advancing the profiler's schedule at each batch the loop takes
            def __getattr__(self, name):
                return getattr(parts.train_loader, name)

            def __iter__(self):
                for batch in parts.train_loader:
                    stamps.append(time.perf_counter())
                    if len(stamps) > 1:
                        prof.step()
                    shapes.append(tuple(batch["input_ids"].shape))
                    yield batch

        step = StepParts(
            parts.model, parts.task, parts.optimizer, parts.scheduler, parts.scaler, parts.precision, config.trainer, parts.dist
        )
        hooks = Hooks(evaluate=lambda: {"loss": 0.0}, on_best=lambda s, m: None)
        fit(step, Stepping(), Selection("loss", MetricMode.min), hooks, steps)
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    timed = stamps[WAIT + WARMUP : WAIT + WARMUP + ACTIVE + 1]
    with open(args.out, "a") as out:
        out.write(
            f"\n### profile: {args.scenario}, llmft{' (plain)' if args.plain else ''}, {getattr(config.precision.mode, 'value', config.precision.mode)}\n\n"
        )
        out.write(f"batches (input_ids shapes): {shapes[:steps]}\n")
        out.write(
            f"profiled steps: {ACTIVE}, wall {1000 * (timed[-1] - timed[0]) / (len(timed) - 1):.1f} ms/step "
            f"(profiler on); sorted by {sort}\n\n```\n"
        )
        out.write(prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))
        out.write("\n```\n")
    print(f"profile written to {args.out}")


if __name__ == "__main__":
    main()
