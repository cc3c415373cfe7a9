"""The compression chain on the bundled data: a fine-tuned MiniLM-L6 (the teacher) -> a 3-layer student distilled from
it -> the student with attention heads pruned -> that model exported to ONNX with int8 weights. Each stage's size on
disk, CPU latency at batch 1 and batch 32 on one thread, and test quality, in one table.

    python bench/chain.py                                   # sentiment: runs into outputs/bench/chain-sentiment/
    python bench/chain.py --task ner
    python bench/chain.py --teacher-run <run> --student-run <run>   # reuse finished runs (e.g. bench/distill.py's)
    python bench/chain.py --markdown out.md                 # appends the table

The stages (each an llmft command, printed as it starts; a stage whose folder is complete is not redone):
    teacher:  llmft train task=<task> model=minilm-l6 <--teacher-extra>
    student:  llmft train task=<task> model=minilm-l6 model.num_layers=3 finetune=distill finetune.teacher=<teacher>
              <--student-extra>
    pruned:   llmft prune run=<student> method=heads amount=<--amount> output=<pruned>; llmft eval run=<pruned> split=test
    int8:     llmft export run=<pruned> format=onnx quantize=int8 output=<int8>
    (and the teacher exported the same way, a row showing what int8 alone gives)
Size: the weight files (*.safetensors, *.onnx, *.onnx.data), not the tokenizer. Latency: the test rows tokenized once
(each batch padded to its longest row, as the task's collator does), one intra-op thread (torch.set_num_threads(1),
onnxruntime intra_op_num_threads=1), after a warm-up; batch 1 over the first --rows-b1 rows, batch 32 over the whole
split. Quality: the task's own test metric (accuracy, entity F1) computed by the task's evaluation on the same batches,
for the ONNX graph through onnxruntime.
Under LLMFT_BENCH_LOCK=<file> every llmft command and the measurement hold that flock (a CPU shared by jobs).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from distill import OUT, llmft

import report

METRIC = {"sentiment": "accuracy", "ner": "f1"}
WEIGHTS = ("*.safetensors", "*.bin", "*.onnx", "*.onnx.data")


@dataclass
class Stage:
    name: str
    run: Path  # the run folder whose checkpoint (or, for ONNX, whose export) is measured
    commands: list[list[str]]
    done: Path  # present when the stage is complete
    onnx: Path | None = None  # the export folder of an ONNX stage


def stages(args: argparse.Namespace) -> list[Stage]:
    """The chain's stages, with the llmft commands that make each."""
    root = OUT / f"chain-{args.task}{args.tag}"
    teacher = Path(args.teacher_run) if args.teacher_run else root / "teacher"
    student = Path(args.student_run) if args.student_run else root / "student"
    pruned, int8, teacher_int8 = root / f"pruned-heads-{args.amount:g}", root / "int8", root / "teacher-int8"
    train = ["train", f"task={args.task}", f"model={args.model}", "trainer.progress=false", *args.extra]
    distill = [f"model.num_layers={args.layers}", "finetune=distill", f"finetune.teacher={teacher}"]
    prune = ["prune", f"run={student}", "method=heads", f"amount={args.amount}", f"output={pruned}"]
    export = ["export", "format=onnx", "quantize=int8"]
    return [
        Stage("teacher", teacher, [[*train, *args.teacher_extra, f"hydra.run.dir={teacher}"]], teacher / "eval.json"),
        Stage(
            "distilled student",
            student,
            [[*train, *distill, *args.student_extra, f"hydra.run.dir={student}"]],
            student / "eval.json",
        ),
        Stage(
            f"pruned ({args.amount:.0%} of heads)",
            pruned,
            [prune, ["eval", f"run={pruned}", "split=test", f"hydra.run.dir={pruned}/eval-test"]],
            pruned / "eval-test" / "eval.json",
        ),
        Stage("int8 ONNX", pruned, [[*export, f"run={pruned}", f"output={int8}"]], int8 / "export.json", int8),
        Stage(
            "teacher int8 ONNX (reference)",
            teacher,
            [[*export, f"run={teacher}", f"output={teacher_int8}"]],
            teacher_int8 / "export.json",
            teacher_int8,
        ),
    ]


def size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for pattern in WEIGHTS for f in folder.glob(pattern)) / 2**20


class OnnxModel:
    """An onnxruntime session that a task's evaluation can call like its PyTorch model (`model(**batch).logits`)."""

    training = False

    def __init__(self, session: Any) -> None:
        self.session, self.names = session, [i.name for i in session.get_inputs()]

    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        return self

    def feed(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {n: batch[n].numpy() for n in self.names}

    def __call__(self, **batch: Any) -> Any:
        import torch

        logits = self.session.run(None, self.feed(batch))[0]
        return argparse.Namespace(logits=torch.from_numpy(logits))


def test_batches(run: Path, batch_size: int, rows: int | None) -> tuple[Any, Any, list[dict[str, Any]]]:
    """(the run's task, its PyTorch model, the test split's batches) as the run's task prepares them."""
    from llmft.commands.common import checkpoint_dir, load_run_config
    from llmft.config import TrainConfig
    from llmft.data import loading as data
    from llmft.data.scored_rows import scored_rows
    from llmft.export.source import load_source

    saved = load_run_config(run, TrainConfig)
    source = load_source(run, saved, checkpoint_dir(run, "best"))
    dataset, _ = scored_rows(run, saved.task.data, saved.task.data, "test")
    if rows is not None:
        dataset = dataset.select(range(min(rows, len(dataset))))
    features = source.task.prepare({"test": dataset})["test"]
    loader = data.make_loader(features, batch_size, source.task.collator(source.tokenizer), False, 0)
    return source.task, source.model.eval(), list(loader)


def ms_per_batch(forward: Callable[[dict[str, Any]], Any], batches: list[dict[str, Any]]) -> float:
    """Mean milliseconds per batch over `batches`, after a warm-up on the first three."""
    for batch in batches[:3]:
        forward(batch)
    start = time.perf_counter()
    for batch in batches:
        forward(batch)
    return (time.perf_counter() - start) * 1000 / len(batches)


def measure(stage: Stage, task_name: str, rows_b1: int) -> dict[str, Any]:
    """Size, latency at batch 1 and 32 (one thread) and the test metric of one stage."""
    import torch

    from llmft.config_types import PrecisionMode
    from llmft.engine.precision import Precision
    from llmft.export.onnx import onnx_session

    torch.set_num_threads(1)
    task, model, batches = test_batches(stage.run, 32, None)
    _, _, singles = test_batches(stage.run, 1, rows_b1)
    if stage.onnx is not None:
        model = OnnxModel(onnx_session(stage.onnx / json.loads((stage.onnx / "export.json").read_text())["model_file"], 1))
        forward: Callable[[dict[str, Any]], Any] = lambda b: model.session.run(None, model.feed(b))  # noqa: E731
    else:
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in batches[0]]
        forward = lambda b: model(**{n: b[n] for n in names})  # noqa: E731
    with torch.inference_mode():
        b1, b32 = ms_per_batch(forward, singles), ms_per_batch(forward, batches)
        precision = Precision(PrecisionMode.fp32, torch.device("cpu"), None)
        metrics = task.eval_metrics([task.eval_partial(model, batches, precision, "test")], "test")
    return {
        "stage": stage.name,
        "mib": size_mib(stage.onnx or stage.run / "checkpoints" / "best"),
        "ms_b1": b1,
        "ms_b32": b32,
        "per_s_b1": 1000 / b1,
        "per_s_b32": 32000 / b32,  # the last batch may be short: whole split / time is within a percent of this
        "metric": METRIC[task_name],
        "value": metrics[_metric_key(metrics, METRIC[task_name])],
    }


def _metric_key(metrics: dict[str, Any], name: str) -> str:
    """The key of the test metric (eval_metrics may prefix it with its role)."""
    return next(k for k in (name, f"test/{name}", f"eval/{name}") if k in metrics)


@contextlib.contextmanager
def bench_lock() -> Iterator[None]:
    """Under LLMFT_BENCH_LOCK=<file>, hold that flock (the one each llmft command takes) while measuring here."""
    path = os.environ.get("LLMFT_BENCH_LOCK")
    if not path:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| stage | size (MiB) | batch 1: ms | batch 1: samples/s | batch 32: ms | batch 32: samples/s "
        "| vs teacher (batch 32) | test metric |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = rows[0]["per_s_b32"]
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['mib']:.1f} | {r['ms_b1']:.2f} | {r['per_s_b1']:.0f} | {r['ms_b32']:.1f} "
            f"| {r['per_s_b32']:.0f} | {r['per_s_b32'] / base:.2f}x | {r['metric']} {r['value']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sentiment", choices=sorted(METRIC))
    parser.add_argument("--teacher-run", help="a finished teacher run to start from (else trained here)")
    parser.add_argument("--student-run", help="a finished distilled student run (else distilled here)")
    parser.add_argument("--teacher-extra", nargs="*", default=[], help="overrides for the teacher, e.g. trainer.epochs=3")
    parser.add_argument("--student-extra", nargs="*", default=[], help="overrides for the student, e.g. finetune.alpha=0.1")
    parser.add_argument("--model", default="minilm-l6", help="the teacher's model option (tiny-bert: a smoke run)")
    parser.add_argument("--layers", type=int, default=3, help="the student's layers (model.num_layers)")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides for both trainings, e.g. trainer.max_steps=4")
    parser.add_argument("--tag", default="", help="suffix of the chain's folder")
    parser.add_argument("--amount", type=float, default=0.3, help="fraction of the student's attention heads removed")
    parser.add_argument("--rows-b1", type=int, default=300, help="test rows timed at batch 1")
    parser.add_argument("--skip-measure", action="store_true", help="run the stages only")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    chain = stages(args)
    for stage in chain:
        if not stage.done.is_file():
            for command in stage.commands:
                llmft(*command)
    if args.skip_measure:
        return
    with bench_lock():  # the measurement is timing: it must not share the CPU with another job
        text = table([measure(stage, args.task, args.rows_b1) for stage in chain])
    report.emit(text, args.markdown)


if __name__ == "__main__":
    main()
