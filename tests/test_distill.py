"""Knowledge distillation (finetune=distill) and students built from a teacher's layers (model.keep_layers /
model.num_layers): the teacher term equals a hand computation for each family and temperature, alpha=1 is plain
fine-tuning, a distilled run resumes exactly, a student checkpoint loads in plain transformers, a teacher that does not
fit is refused."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import FAST, cli, only_run_dir

from llmft.config_types import KDLoss
from llmft.engine import distill_loss
from llmft.engine.distill_loss import Distillation
from llmft.tasks import get_task, options

TEACHER = [[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]]
STUDENT = [[1.0, 0.0, -0.5], [0.4, -0.3, 1.0]]
LABELS = [0, 2]


def _log_softmax(row: list[float], t: float) -> list[float]:
    scaled = [x / t for x in row]
    top = max(scaled)
    lse = top + math.log(sum(math.exp(x - top) for x in scaled))
    return [x - lse for x in scaled]


def _hand_divergence(student: list[list[float]], teacher: list[list[float]], t: float, kind: KDLoss) -> float:
    """T^2 * sum over rows of D(teacher || student), written out from the definitions."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        ls, lt = _log_softmax(s_row, t), _log_softmax(t_row, t)
        ps, pt = [math.exp(x) for x in ls], [math.exp(x) for x in lt]
        if kind is KDLoss.forward_kl:
            total += sum(p * (a - b) for p, a, b in zip(pt, lt, ls))
        elif kind is KDLoss.reverse_kl:
            total += sum(p * (b - a) for p, a, b in zip(ps, lt, ls))
        else:
            m = [0.5 * a + 0.5 * b for a, b in zip(pt, ps)]
            total += 0.5 * sum(a * math.log(a / c) for a, c in zip(pt, m)) + 0.5 * sum(b * math.log(b / c) for b, c in zip(ps, m))
    return t * t * total


def _hand_cross_entropy(logits: list[list[float]], labels: list[int]) -> float:
    return -sum(_log_softmax(row, 1.0)[y] for row, y in zip(logits, labels))


class Fixed(torch.nn.Module):
    """A stand-in model whose output is fixed logits (a parameter, so the student's gradients can be read)."""

    def __init__(self, logits: list) -> None:
        super().__init__()
        self.out = torch.nn.Parameter(torch.tensor(logits, dtype=torch.float32))

    def forward(self, **inputs: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.out)


@pytest.mark.parametrize("kind", list(KDLoss))
@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_the_teacher_term_equals_a_hand_computation(temperature, kind):
    kd = Distillation(temperature, 0.3, kind)
    got = kd.divergence_sum(torch.tensor(STUDENT), torch.tensor(TEACHER))
    assert float(got) == pytest.approx(_hand_divergence(STUDENT, TEACHER, temperature, kind), rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_each_family_mixes_its_loss_with_the_teacher_term_by_hand(temperature):
    kd, alpha = Distillation(temperature, 0.25), 0.25
    expected = alpha * _hand_cross_entropy(STUDENT, LABELS) + (1 - alpha) * _hand_divergence(
        STUDENT, TEACHER, temperature, KDLoss.forward_kl
    )
    batch = {"input_ids": torch.zeros(2, 4, dtype=torch.long), "labels": torch.tensor(LABELS)}
    for family in (get_task(options.ClassificationOptions()), get_task(options.MultipleChoiceOptions())):
        got = family.distill_loss_sum(Fixed(STUDENT), Fixed(TEACHER).requires_grad_(False), batch, kd)
        assert float(got.detach()) == pytest.approx(expected, rel=1e-5)

    # token classification: only the supervised sub-words (label != -100) count
    tokens = get_task(options.TokenClassificationOptions())
    padded_student = [[STUDENT[0], [9.0, 9.0, -9.0]], [[5.0, 1.0, 1.0], STUDENT[1]]]
    padded_teacher = [[TEACHER[0], [0.0, 0.0, 0.0]], [[1.0, 2.0, 3.0], TEACHER[1]]]
    token_batch = {"input_ids": torch.zeros(2, 2, dtype=torch.long), "labels": torch.tensor([[0, -100], [-100, 2]])}
    got = tokens.distill_loss_sum(Fixed(padded_student), Fixed(padded_teacher), token_batch, kd)
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)

    # regression: squared error to the gold score and to the teacher's score (no temperature)
    regression = get_task(options.TaskConfig(family="regression"))
    scores = {"input_ids": torch.zeros(2, 3, dtype=torch.long), "labels": torch.tensor([1.0, 3.0])}
    got = regression.distill_loss_sum(Fixed([[2.0], [2.5]]), Fixed([[1.5], [4.0]]), scores, kd)
    assert float(got.detach()) == pytest.approx(alpha * (1.0 + 0.25) + (1 - alpha) * (0.25 + 2.25))


def _tiny_decoder(seed: int) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32)).eval()


@pytest.mark.parametrize("kind", list(KDLoss))
def test_token_distillation_in_chunks_equals_the_full_logits_by_hand(monkeypatch, kind):
    student, teacher = _tiny_decoder(0), _tiny_decoder(1).requires_grad_(False)
    ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    targets = ids.clone()
    targets[0, :4] = -100  # a prompt: not supervised
    kd = Distillation(2.0, 0.4, kind)
    monkeypatch.setattr(distill_loss, "CHUNK_ELEMENTS", 50 * 3)  # 3 rows a chunk: several chunks and a ragged last one
    chunked = distill_loss.token_distill_sum(student, teacher, {"input_ids": ids}, targets, kd)
    chunked.backward()
    grads = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()

    supervised = targets != -100
    s_logits = student(input_ids=ids).logits[supervised]
    t_logits = teacher(input_ids=ids).logits[supervised]
    plain = kd.mix(
        torch.nn.functional.cross_entropy(s_logits, targets[supervised], reduction="sum"), kd.divergence_sum(s_logits, t_logits)
    )
    plain.backward()
    hand = 0.4 * _hand_cross_entropy(s_logits.tolist(), targets[supervised].tolist()) + 0.6 * _hand_divergence(
        s_logits.tolist(), t_logits.tolist(), 2.0, kind
    )
    assert float(chunked.detach()) == pytest.approx(hand, rel=1e-4) and float(plain.detach()) == pytest.approx(hand, rel=1e-4)
    for got, want in zip(grads, (p.grad for p in student.parameters())):
        assert torch.allclose(got, want, atol=1e-5)


def _curve(run: Path) -> list:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "per_s" not in k and "seconds" not in k} for r in records]


@pytest.mark.parametrize("task", [["task=sentiment"], ["task=sft", "model=tiny-gpt2"]])
def test_alpha_1_at_temperature_1_is_plain_fine_tuning(tmp_path, task):
    common = [*FAST, *task, "trainer.log_every=1", "trainer.max_steps=4"]
    teacher = "tiny-gpt2" if "model=tiny-gpt2" in task else "tiny-bert"
    (tmp_path / "full").mkdir(), (tmp_path / "kd").mkdir()
    cli(["train", *common, "finetune=full"], cwd=tmp_path / "full")
    cli(
        ["train", *common, "finetune=distill", f"finetune.teacher={teacher}", "finetune.alpha=1", "finetune.temperature=1"],
        cwd=tmp_path / "kd",
    )
    full, kd = (_curve(only_run_dir(tmp_path / name / "outputs")) for name in ("full", "kd"))
    assert [r for r in kd if "train/loss" in r] == [r for r in full if "train/loss" in r]  # bitwise equal losses
    assert len([r for r in kd if "train/loss" in r]) == 4


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("teacher")
    cli(["train", *FAST, "task=sentiment"], cwd=where)
    return only_run_dir(where / "outputs")


def test_a_student_learns_from_a_teacher_run_and_loads_in_plain_transformers(tmp_path, teacher_run):
    from transformers import AutoModelForSequenceClassification

    cli(
        [
            "train",
            *FAST,
            "task=sentiment",
            "finetune=distill",
            f"finetune.teacher={teacher_run}",
            f"model.name_or_path={teacher_run}/checkpoints/best",
            "model.keep_layers=[1]",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    student = AutoModelForSequenceClassification.from_pretrained(run / "checkpoints" / "best")
    assert student.config.num_hidden_layers == 1 and len(student.bert.encoder.layer) == 1
    assert json.loads((run / "eval.json").read_text())["metrics"]["samples"] > 0


def test_a_teacher_with_other_labels_or_another_vocabulary_is_refused(tmp_path, teacher_run):
    other_labels = tmp_path / "labels"
    shutil.copytree(teacher_run / "checkpoints" / "best", other_labels)
    config = json.loads((other_labels / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "spam", "1": "ham"}, {"spam": 0, "ham": 1}
    (other_labels / "config.json").write_text(json.dumps(config))
    proc = cli(["train", *FAST, "finetune=distill", f"finetune.teacher={other_labels}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "its labels ['spam', 'ham'] are not the student's ['negative', 'positive']" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

    from llmft.models.builtin import tiny_bpe_path

    other_vocabulary = tmp_path / "vocabulary"
    shutil.copytree(teacher_run / "checkpoints" / "best", other_vocabulary)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (other_vocabulary / name).unlink(missing_ok=True)
    for file in Path(tiny_bpe_path()).iterdir():
        shutil.copy(file, other_vocabulary / file.name)
    proc = cli(["train", *FAST, "finetune=distill", f"finetune.teacher={other_vocabulary}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "its vocabulary (2048 tokens) is not the student's (30522 tokens)" in proc.stderr


def test_distill_without_a_teacher_or_on_a_family_without_a_teacher_term_is_refused(tmp_path):
    proc = cli(["train", *FAST, "finetune=distill"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "finetune=distill needs finetune.teacher=" in proc.stderr
    qa = ["task=qa", "model.max_length=128", "finetune=distill", "finetune.teacher=tiny-bert"]
    proc = cli(["train", *FAST, *qa], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "task.family=extractive_qa has no teacher term" in proc.stderr


@pytest.mark.slow  # three short runs
@pytest.mark.parametrize(  # augment 1: the transfer rows are made again, the same, on resume (and, cached, their outputs)
    "augment, cache", [(0, "false"), (1, "false"), (1, "true")], ids=["live", "transfer-rows", "transfer-rows-cached"]
)
def test_a_distilled_run_resumes_exactly(tmp_path, monkeypatch, augment, cache):
    from llmft.engine import loop

    args = [
        *FAST[:3],
        "trainer.max_steps=8",
        "trainer.eval_every=4",
        "trainer.log_every=1",
        "trainer.progress=false",
        "trainer.save_every=2",
        "model.keep_layers=[0]",
        "finetune=distill",
        "finetune.teacher=tiny-bert",
        "finetune.temperature=2",
        "finetune.alpha=0.5",
        f"finetune.augment={augment}",
        f"finetune.cache_teacher={cache}",
    ]  # dropout on: the RNG streams are restored too
    (tmp_path / "unbroken").mkdir(), (tmp_path / "broken").mkdir()
    cli(["train", *args], cwd=tmp_path / "unbroken")
    step = loop.optimizer_step

    def stop_after_step_3(parts, group, state):
        loss = step(parts, group, state)
        if state.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(loop, "optimizer_step", stop_after_step_3)
    proc = cli(["train", *args], cwd=tmp_path / "broken", check=False)
    assert proc.returncode == 130, proc.stderr[-2000:]
    monkeypatch.setattr(loop, "optimizer_step", step)
    broken = only_run_dir(tmp_path / "broken" / "outputs")
    cli(["train", f"trainer.resume={broken}", "trainer.progress=false"], cwd=tmp_path / "broken")
    assert _curve(broken) == _curve(only_run_dir(tmp_path / "unbroken" / "outputs"))


@pytest.mark.slow  # one short run per family
@pytest.mark.parametrize(
    "task, model", [("ner", "tiny-bert"), ("sts", "tiny-bert"), ("multiple-choice", "tiny-bert"), ("summarization", "tiny-t5")]
)
def test_every_family_distills_end_to_end_into_a_shallower_student(tmp_path, task, model):
    import transformers

    cli(
        [
            "train",
            *FAST,
            f"task={task}",
            f"model={model}",
            "model.keep_layers=[1]",
            "finetune=distill",
            f"finetune.teacher={model}",
            "finetune.kd_loss=jsd",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    loss = [json.loads(x)["train/loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if "train/loss" in x]
    assert loss and all(math.isfinite(x) for x in loss)
    config = transformers.AutoConfig.from_pretrained(run / "checkpoints" / "best")
    assert config.num_hidden_layers == 1 and getattr(config, "num_decoder_layers", 1) == 1
