"""The benchmark scenarios and what every implementation measures the same way.

Each scenario fixes model, data, batch size, sequence length, optimizer and precision. The three implementations
(llmft, a bare PyTorch loop, transformers.Trainer) train on the same tokenized features, built once by llmft's own
task code, so they differ only in how they batch and step.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CACHE = Path.home() / ".cache" / "llmft" / "bench"


@dataclass
class Scenario:
    name: str
    overrides: list[str]  # llmft config of the run (what all three implementations train)
    steps: int  # optimizer steps timed
    warmup: int  # first steps left out of the steady-state figures
    eval_rows: int
    llmft_extra: list[str] = field(default_factory=list)  # llmft's speed options beyond its defaults (packing)
    note: str = ""
    dev_metric: str = "accuracy"  # "loss": eval loss (generative, token and regression scenarios), the same for every impl

    def llmft_overrides(self, options: bool) -> list[str]:
        """llmft's speed options on (the defaults, which group classification batches by length, plus `llmft_extra`),
        or all off (llmft-plain: random batches padded per batch, the batch semantics of the bare loop and Trainer)."""
        return self.llmft_extra if options else OPTIONS_OFF


OPTIONS_OFF = ["trainer.group_by_length=false", "task.packing=false"]
NO_GENERATION = "task.eval_generate_samples=0"  # eval = loss only (an option of the generative task schema)


COMMON_NO_PRECISION = ["trainer.progress=false", "model.dropout=0.0", "optimizer=adamw", "scheduler=linear"]
COMMON = [*COMMON_NO_PRECISION, "precision=fp32"]

SCENARIOS = {
    "cls": Scenario(
        "cls",
        [*COMMON, "task=sentiment", "model=minilm-l6", "trainer.batch_size=32", "optimizer.lr=5e-5"],
        steps=188,
        warmup=5,
        eval_rows=500,
        note="MiniLM-L6 (22.7M) sentiment, short variable-length reviews, batch 32, 188 steps (2 epochs, "
        "the main job's training); dev = accuracy on the 500 validation rows",
    ),
    "ner": Scenario(
        "ner",
        [*COMMON, "task=ner", "model=minilm-l6", "task.data.path=@conll2003", "trainer.batch_size=32", "optimizer.lr=5e-5"],
        steps=150,
        warmup=5,
        eval_rows=500,
        dev_metric="loss",
        note="MiniLM-L6 NER on a CoNLL-2003-layout folder with CoNLL's length law (1-113 words), batch 32",
    ),
    "sts": Scenario(
        "sts",
        [*COMMON, "task=sts", "model=minilm-l6", "task.data.path=@stsb", "trainer.batch_size=32", "optimizer.lr=5e-5"],
        steps=150,
        warmup=5,
        eval_rows=500,
        dev_metric="loss",
        note="MiniLM-L6 sentence-pair regression on a GLUE STS-B-layout folder with its length mix, batch 32",
    ),
    "sft-tiny": Scenario(
        "sft-tiny",
        [
            *COMMON,
            "task=sft",
            "model=tiny-gpt2",
            "model.max_length=256",
            "trainer.batch_size=16",
            "optimizer.lr=1e-3",
            "task.data.path=@skewed",
            "task.use_chat_template=false",
            NO_GENERATION,
        ],
        steps=60,
        warmup=5,
        eval_rows=128,
        llmft_extra=["task.packing=true"],
        note="tiny GPT-2 (0.25M) SFT on a length-skewed corpus, batch 16, max_length 256; dev = eval loss",
    ),
    "sft-smollm2": Scenario(
        "sft-smollm2",
        [
            *COMMON,
            "task=sft",
            "model=smollm2-135m",
            "model.max_length=256",
            "trainer.batch_size=8",
            "optimizer.lr=2e-5",
            "task.data.path=@skewed",
            "task.use_chat_template=false",
        ],
        steps=5,
        warmup=1,
        eval_rows=32,
        llmft_extra=["task.packing=true"],
        note="SmolLM2-135M SFT on the length-skewed corpus, batch 8, max_length 256",
    ),
    "sft-0.5b": Scenario(
        "sft-0.5b",
        [
            *[c for c in COMMON if c != "precision=fp32"],
            "precision=bf16",
            "task=sft",
            "model=qwen2.5-0.5b",
            "model.max_length=1024",
            "trainer.batch_size=8",
            "optimizer.lr=2e-5",
            "task.data.path=@skewed",
            "task.use_chat_template=false",
            NO_GENERATION,
        ],
        steps=30,
        warmup=5,
        eval_rows=64,
        llmft_extra=["task.packing=true"],
        note="CUDA: Qwen2.5-0.5B bf16 SFT (hub download once); reports MFU with --peak-tflops",
    ),
    # The GPU check (bench/gpu/check.sh): real architectures' shapes with random weights (bench/gpu/shapes.py), no
    # download. Precision comes from `--all precision=...` where a scenario does not fix it (auto: bf16 on a GPU).
    "sft-0.5b-shape": Scenario(
        "sft-0.5b-shape",
        [
            *COMMON_NO_PRECISION,
            "precision=bf16",
            "task=sft",
            "model.name_or_path=@shape:qwen2.5-0.5b",
            "model.max_length=2048",
            "trainer.batch_size=8",
            "optimizer.lr=2e-5",
            "task.data.path=@skewed",
            "task.use_chat_template=false",
            NO_GENERATION,
        ],
        steps=30,
        warmup=5,
        eval_rows=64,
        llmft_extra=["task.packing=true"],
        note="Qwen2.5-0.5B-shaped decoder (494M, random weights), bf16 SFT, batch 8, max_length 2048",
    ),
    "cls-base-shape": Scenario(
        "cls-base-shape",
        [
            *COMMON_NO_PRECISION,
            "task=sentiment",
            "model.name_or_path=@shape:bert-base",
            "model.max_length=128",
            "trainer.batch_size=32",
            "optimizer.lr=5e-5",
        ],
        steps=60,
        warmup=5,
        eval_rows=500,
        note="BERT-base-shaped encoder (110M, random weights) sentiment, batch 32",
    ),
    "sft-shape-tiny": Scenario(
        "sft-shape-tiny",
        [
            *COMMON_NO_PRECISION,
            "task=sft",
            "model.name_or_path=@shape-tiny:qwen2.5-0.5b",
            "model.max_length=256",
            "trainer.batch_size=4",
            "optimizer.lr=1e-3",
            "task.data.path=@skewed",
            "task.use_chat_template=false",
            NO_GENERATION,
            "task.data.max_train_samples=256",
        ],
        steps=6,
        warmup=2,
        eval_rows=16,
        llmft_extra=["task.packing=true"],
        note="the GPU check's CPU dry path: sft-0.5b-shape's architecture, a few small layers",
    ),
    "cls-shape-tiny": Scenario(
        "cls-shape-tiny",
        [
            *COMMON_NO_PRECISION,
            "task=sentiment",
            "model.name_or_path=@shape-tiny:bert-base",
            "model.max_length=64",
            "trainer.batch_size=16",
            "optimizer.lr=1e-3",
            "task.data.max_train_samples=256",
        ],
        steps=6,
        warmup=2,
        eval_rows=32,
        note="the GPU check's CPU dry path: cls-base-shape's architecture, a few small layers",
    ),
}


def _preference_scenarios() -> dict[str, Scenario]:
    """Issue 21's GPU measurement: LoRA DPO on the 0.5B shape (the reference is the base with the adapter off), with
    and without `task.precompute_reference`, beside LoRA SFT at the same batch (peak memory within 1.3x of it); and
    their CPU dry path on the tiny shape. llmft only (`--impls llmft`): the other implementations have no DPO."""
    shapes = {"": ("@shape:qwen2.5-0.5b", "512", 30, 5, 64), "-tiny": ("@shape-tiny:qwen2.5-0.5b", "128", 6, 2, 16)}
    out = {}
    for suffix, (model, length, steps, warmup, eval_rows) in shapes.items():
        common = [*COMMON_NO_PRECISION, "precision=bf16" if not suffix else "precision=fp32", f"model.name_or_path={model}"]
        common += [f"model.max_length={length}", "trainer.batch_size=8", "finetune=lora", "optimizer.lr=2e-4"]
        common += ["task.use_chat_template=false", "trainer.group_by_length=false"]
        variants = {
            f"dpo{'-0.5b-shape' if not suffix else '-shape-tiny'}": ["task=dpo"],
            f"dpo-precomputed{'-0.5b-shape' if not suffix else '-shape-tiny'}": ["task=dpo", "task.precompute_reference=true"],
            f"sft-lora{'-0.5b-shape' if not suffix else '-shape-tiny'}": ["task=sft", "task.data.path=@skewed", NO_GENERATION],
        }
        for name, task in variants.items():
            note = f"LoRA {task[0].split('=')[1].upper()} on the Qwen2.5-0.5B shape{' (tiny)' if suffix else ''}, batch 8"
            out[name] = Scenario(
                name, [*common, *task], steps=steps, warmup=warmup, eval_rows=eval_rows, note=note, dev_metric="loss"
            )
    return out


SCENARIOS.update(_preference_scenarios())


def skewed_corpus(rows: int = 2400, seed: int = 0) -> Path:
    """Prompt/response rows whose lengths follow a long-tailed (log-normal) law: most short, a few long, as in
    real instruction data. Written once to the cache."""
    path = CACHE / f"skewed-{rows}-{seed}"
    if (path / "train.jsonl").is_file():
        return path
    rng = random.Random(seed)
    words = "the a model data train token loss batch step value small large quick brown fox jumps over lazy dog".split()
    path.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", rows), ("validation", 200), ("test", 200)):
        with open(path / f"{split}.jsonl", "w") as f:
            for _ in range(n):
                words_in = min(int(rng.lognormvariate(3.0, 0.9)), 300)
                text = " ".join(rng.choice(words) for _ in range(max(words_in, 2)))
                cut = max(1, len(text.split()) // 3)
                f.write(json.dumps({"prompt": " ".join(text.split()[:cut]), "response": " ".join(text.split()[cut:])}) + "\n")
    return path


def resolve(overrides: list[str]) -> list[str]:
    """The scenario's overrides, then any given to every implementation (`run.py --all "seed=1"`)."""
    every = os.environ.get("LLMFT_BENCH_ALL", "").split()
    return [_placeholders(o) for o in [*overrides, *every]]


def _placeholders(override: str) -> str:
    """`@skewed`: the generated corpus; `@conll2003` / `@stsb`: CoNLL-2003 / STS-B-layout folders (published_like.py); `@shape:NAME` / `@shape-tiny:NAME`: a model folder built by bench/gpu/shapes.py."""
    if "@shape" in override:
        sys.path.insert(0, str(Path(__file__).resolve().parent / "gpu"))
        from shapes import shape_path

        key, value = override.split("=", 1)
        kind, name = value[1:].split(":", 1)
        return f"{key}={shape_path(name, tiny=kind == 'shape-tiny')}"
    if "@conll2003" in override or "@stsb" in override:
        import published_like

        return override.replace("@conll2003", str(published_like.conll2003())).replace("@stsb", str(published_like.stsb()))
    return override.replace("@skewed", str(skewed_corpus()))


def compose(overrides: list[str]) -> Any:
    """The typed TrainConfig the llmft CLI would build from these overrides."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from llmft.cli import register_recipes
    from llmft.commands.common import to_typed
    from llmft.cli import register_configs
    from llmft.config import TrainConfig
    from llmft.paths import conf_dir

    register_configs()
    register_recipes()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return to_typed(hydra_compose("train", overrides=resolve(overrides)), TrainConfig)


class Meter:
    """Timestamps each batch the training loop takes, with its samples and real (non-pad) tokens. A batch is taken
    when the previous step has finished, so the gaps are step times."""

    def __init__(self, start: float):
        self.start, self.events = start, []  # (time, samples, tokens)

    def batch(self, batch: dict[str, Any]) -> None:
        self.events.append((time.perf_counter(), *samples_and_tokens(batch)))

    def result(self, warmup: int, steps: int) -> dict[str, float]:
        """Steady state over steps warmup..steps (the batch of step k is taken when step k-1 has ended)."""
        events = self.events[: steps + 1]
        first_step = events[1][0] if len(events) > 1 else float("nan")  # taken when step 1 has finished
        timed = events[warmup:]
        elapsed = timed[-1][0] - timed[0][0]
        samples = sum(e[1] for e in timed[:-1])
        tokens = sum(e[2] for e in timed[:-1])
        return {
            "samples_per_s": samples / elapsed,
            "tokens_per_s": tokens / elapsed,
            "step_s": elapsed / (len(timed) - 1),
            "time_to_first_step_s": first_step - self.start,
        }


def samples_and_tokens(batch: dict[str, Any]) -> tuple[int, int]:
    """Examples and real tokens in a batch: from the attention mask, or for packed rows (no mask) from the restarts
    of the position ids and the last supervised position of each row (padding is never supervised)."""
    if "attention_mask" in batch:
        return len(batch["input_ids"]), int(batch["attention_mask"].sum())
    labels, positions = batch["labels"], batch["position_ids"]
    samples = tokens = 0
    for row_labels, row_positions in zip(labels, positions):
        supervised = (row_labels != -100).nonzero()
        real = int(supervised[-1]) + 1 if len(supervised) else 0
        tokens += real
        samples += int((row_positions[:real] == 0).sum())
    return samples, tokens


def mfu(params: int, tokens_per_s: float) -> float | None:
    """Model FLOPs utilisation: 6 x parameters x tokens/s (forward + backward, attention left out) over the peak the
    user gives (`run.py --peak-tflops 989` for an H100 SXM in bf16, dense)."""
    peak = float(os.environ.get("LLMFT_BENCH_PEAK_TFLOPS", "0") or 0)
    return 6 * params * tokens_per_s / (peak * 1e12) if peak > 0 else None


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cuda_peak_mib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
