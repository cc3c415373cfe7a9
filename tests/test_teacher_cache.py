"""finetune.cache_teacher=true: the teacher's outputs computed once for the train split and read back by row index give
the run the live teacher gives (shuffled, length-grouped batches included); a family whose teacher outputs are
vocabulary-sized per token is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAST, cli, only_run_dir

from llmft.engine.teacher_cache import TeacherCache


def _losses(run: Path) -> list[float]:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in records if "train/loss" in r]


@pytest.mark.parametrize("task", ["sentiment", "ner"])  # class logits per row; tag logits per token
def test_a_cached_teacher_gives_the_live_teachers_run(tmp_path, monkeypatch, task):
    looked_up = []
    for_rows = TeacherCache.for_rows
    monkeypatch.setattr(TeacherCache, "for_rows", lambda self, index: looked_up.append(len(index)) or for_rows(self, index))
    args = [
        *FAST,
        f"task={task}",
        "trainer.max_steps=4",
        "trainer.log_every=1",
        "trainer.batch_size=8",
        "model.keep_layers=[0]",
        "finetune=distill",
        "finetune.teacher=tiny-bert",
        "finetune.alpha=0.3",
    ]
    (tmp_path / "live").mkdir(), (tmp_path / "cached").mkdir()
    cli(["train", *args], cwd=tmp_path / "live")
    assert looked_up == []
    cli(["train", *args, "finetune.cache_teacher=true"], cwd=tmp_path / "cached")
    assert looked_up == [8, 8, 8, 8]  # every step read the cache, by row
    live, cached = (_losses(only_run_dir(tmp_path / name / "outputs")) for name in ("live", "cached"))
    assert len(live) == 4
    assert cached == pytest.approx(live, abs=1e-6, rel=0)


def test_cache_teacher_is_refused_for_a_decoder_and_outside_distill(tmp_path):
    proc = cli(
        [
            "train",
            *FAST,
            "task=sft",
            "model=tiny-gpt2",
            "finetune=distill",
            "finetune.teacher=tiny-gpt2",
            "finetune.cache_teacher=true",
        ],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "task.family=causal_lm compares per-token distributions over the vocabulary (rows x tokens x" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = cli(["train", *FAST, "finetune.cache_teacher=true"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "finetune.cache_teacher is used by finetune=distill only" in proc.stderr
    args = ["train", *FAST, "finetune=distill", "finetune.teacher=tiny-bert", "finetune.cache_teacher=true"]
    proc = cli([*args, "finetune.hidden_weight=1"], cwd=tmp_path, check=False)  # hidden states need the live teacher
    assert proc.returncode == 2 and "finetune.cache_teacher=true keeps only its outputs" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _two_processes(rank: int, shares: list):
    """`Dist` of process `rank` of two, whose gather returns what this process sent and, in the other's place, the
    outputs that process computes (the same function run alone on its share)."""
    from llmft.engine.distributed import Dist

    dist = Dist(rank=rank, world=2)

    def gather_tensors(obj):
        assert len(obj) == len(shares[rank])  # this process sends its share's rows only
        return [obj if r == rank else share for r, share in enumerate(shares)]

    dist.gather_tensors = gather_tensors
    return dist


def test_processes_share_the_teachers_passes_and_each_gets_every_row():
    """Under torchrun the cache and the transfer rows' labels are computed in shares: each process runs the teacher over
    half the rows, and each ends with every row's outputs, in order, as one process computes them."""
    import torch
    from test_transfer_rows import DISTILL, _parts

    from llmft.engine.teacher_cache import fill_cache, row_logits  # row_logits: what finetune.augment labels from

    parts = _parts(["task=ner", *DISTILL])
    teacher, rows = parts.loss_fn.teacher, parts.train_loader.dataset
    run = (parts.task.collator(parts.tokenizer), 8, parts.precision)
    seen: list[int] = []
    teacher.register_forward_hook(lambda module, args, kwargs, out: seen.append(len(kwargs["input_ids"])), with_kwargs=True)
    for compute in (fill_cache, row_logits):

        def sent(result):  # what a process sends: its rows' outputs, in order
            return [row.cpu() for row in (result if compute is row_logits else result.outputs)]

        alone = sent(compute(teacher, rows, *run))
        shares = [sent(compute(teacher, rows.shard(2, r, contiguous=True), *run)) for r in range(2)]
        for rank in (0, 1):
            seen.clear()
            result = sent(compute(teacher, rows, *run, _two_processes(rank, shares)))
            assert sum(seen) == len(rows) // 2  # this process's share only
            assert len(result) == len(alone) == len(rows)
            assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(result, alone))
