"""Run a scenario for llmft, the bare PyTorch loop and transformers.Trainer, interleaved (A B C A B C ...), each in a
fresh process, and print medians with the ratios llmft / bare and llmft / Trainer.

    python bench/run.py cls --repeats 3
    python bench/run.py sft-tiny sft-smollm2 --repeats 2 --markdown bench/results.md
    python bench/run.py gen
    python bench/run.py cls --impls llmft --llmft "trainer.compile=true"
    python bench/run.py sft-0.5b --peak-tflops 989       # on a CUDA machine (H100 SXM, bf16): adds MFU
    python bench/run.py cls-base-shape --all precision=fp16   # random weights in BERT-base's shape, no download
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMPLS = ("llmft", "llmft-plain", "bare", "trainer")  # llmft-plain: its speed options (packing, grouping) off
COLUMNS = (
    "samples_per_s",
    "tokens_per_s",
    "step_s",
    "time_to_first_step_s",
    "peak_rss_mib",
    "cuda_peak_mib",
    "eval_samples_per_s",
    "dev",
    "mfu",
    "grad_scale",
    "skipped_steps",
)  # the last two: fp16 only


def child(impl: str, name: str) -> None:
    """One measurement in this process; prints one JSON line."""
    start = time.perf_counter()
    sys.path.insert(0, str(HERE))
    from scenarios import SCENARIOS, cuda_peak_mib, mfu, peak_rss_mib

    if name == "gen":
        import generation_bench

        out = generation_bench.run(impl, start)
    else:
        scenario = SCENARIOS[name]
        if impl.startswith("llmft"):
            import impl_llmft

            out = impl_llmft.run(scenario, start, options=impl == "llmft")
        elif impl == "bare":
            import impl_bare

            out = impl_bare.run(scenario, start)
        else:
            import impl_trainer

            with tempfile.TemporaryDirectory() as tmp:
                out = impl_trainer.run(scenario, start, tmp)
    out.update(
        peak_rss_mib=peak_rss_mib(), cuda_peak_mib=cuda_peak_mib(), mfu=mfu(out.pop("params", 0), out.get("tokens_per_s", 0))
    )
    print("BENCH " + json.dumps(out), flush=True)


def measure(impl: str, name: str, keep_going: bool = False) -> dict | None:
    """One measurement in a fresh process; a failure stops the run, or with `keep_going` is reported and left out."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(Path(__file__)), "--child", impl, name], capture_output=True, text=True, env=env)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        message = f"{impl} on {name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        if not keep_going:
            raise SystemExit(message)
        print(message, file=sys.stderr)
        return None
    return json.loads(lines[-1][len("BENCH ") :])


def table(name: str, runs: dict[str, list[dict]]) -> str:
    runs = {impl: rs for impl, rs in runs.items() if rs}  # an implementation that failed every time has no row
    if not runs:
        return f"### {name}: every measurement failed (see the log)\n"
    med = {impl: {c: _median([r.get(c) for r in rs]) for c in COLUMNS} for impl, rs in runs.items()}
    lines = [
        f"### {name} (median of {max(len(rs) for rs in runs.values())})",
        "",
        "| | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for impl, row in med.items():
        lines.append(f"| {impl} | " + " | ".join(_fmt(row[c]) for c in COLUMNS) + " |")
    pairs = [("llmft", "bare"), ("llmft", "trainer"), ("llmft-plain", "bare"), ("llmft-plain", "trainer")]
    for a, b in [(a, b) for a, b in pairs if a in med and b in med]:
        lines.append(f"| {a} / {b} | " + " | ".join(_ratio(med[a][c], med[b][c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def machine() -> str:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {device}, python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "scenarios",
        nargs="*",
        default=["cls"],
        help="cls, ner, sts, sft-tiny, sft-smollm2, gen, sft-0.5b, sft-0.5b-shape, cls-base-shape, sft-shape-tiny, cls-shape-tiny",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--impls", default=",".join(IMPLS), help="a subset, e.g. llmft,trainer")
    parser.add_argument("--peak-tflops", default="", help="the accelerator's peak TFLOPS for the run's precision: adds MFU")
    parser.add_argument("--all", default="", help="overrides for every implementation, e.g. 'seed=1'")
    parser.add_argument("--llmft", default="", help="extra llmft overrides, e.g. 'trainer.compile=true'")
    parser.add_argument("--markdown", type=Path, help="append the tables to this file")
    parser.add_argument("--keep-going", action="store_true", help="report a failed measurement and go on without it")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "SCENARIO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    impls = args.impls.split(",")
    os.environ["LLMFT_BENCH_EXTRA"] = args.llmft
    os.environ["LLMFT_BENCH_ALL"] = args.all
    os.environ["LLMFT_BENCH_PEAK_TFLOPS"] = args.peak_tflops
    report = [f"machine: {machine()}; command: python bench/run.py {' '.join(sys.argv[1:])}", ""]
    for name in args.scenarios:
        runs: dict[str, list[dict]] = {impl: [] for impl in impls if name != "gen" or impl != "llmft-plain"}
        for repeat in range(args.repeats):
            for impl in runs:  # interleaved: slow drifts of the machine hit every implementation alike
                result = measure(impl, name, args.keep_going)
                if result is None:
                    continue
                runs[impl].append(result)
                print(
                    f"{name} #{repeat + 1} {impl}: "
                    + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}),
                    file=sys.stderr,
                )
        report.append(table(f"{name} {args.all}".strip(), runs))  # the heading names overrides given to every implementation
        print(report[-1])
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
