"""finetune=distill for sentence embeddings: the teacher term is the teacher's in-batch similarity distribution
(softened, as the class families' logits) for pair rows and its cosine for scored rows, equal to a hand computation;
a distilled 1-layer student trains through the CLI and loads in sentence-transformers; what cannot work is refused in
one line."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import FAST, cli, only_run_dir
from test_distill import _hand_divergence, _log_softmax

from llmft.config_types import KDLoss
from llmft.engine.distill_loss import Distillation
from llmft.tasks import get_task, options

SCALE = 20.0
# anchors a1 a2, positives b1 b2, one hard negative c1 (the collator's order)
STUDENT = [[1.0, 0.0], [0.6, 0.8], [0.9, 0.3], [0.1, 1.0], [0.7, 0.6]]  # the negative is close to both anchors
TEACHER = [[1.0, 0.1], [0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.2]]


class FixedStates(torch.nn.Module):
    """A stand-in backbone whose token states are fixed vectors, one token per text (mean pooling returns them)."""

    def __init__(self, vectors: list) -> None:
        super().__init__()
        self.out = torch.nn.Parameter(torch.tensor(vectors, dtype=torch.float32)[:, None, :])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=self.out)


def _cos(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def _sims(vectors: list) -> list[list[float]]:
    """scale * cosine of each anchor to b1, b2, c1."""
    return [[SCALE * _cos(vectors[i], vectors[j]) for j in (2, 3, 4)] for i in (0, 1)]


def _batch(kind: list[int], texts: int) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.zeros(texts, 1, dtype=torch.long),
        "attention_mask": torch.ones(texts, 1, dtype=torch.long),
        "kind": torch.tensor(kind),
        "score": torch.tensor([0.5] * len(kind)),
    }


@pytest.mark.parametrize("kind", list(KDLoss))
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_pairs_distill_the_teachers_in_batch_similarities_by_hand(temperature, kind):
    task, alpha = get_task(options.EmbeddingOptions(scale=SCALE)), 0.25
    got = task.distill_loss_sum(
        FixedStates(STUDENT), FixedStates(TEACHER), _batch([0, 0], 5), Distillation(temperature, alpha, kind)
    )
    ours = _sims(STUDENT)
    ranking = -sum(_log_softmax(row, 1.0)[i] for i, row in enumerate(ours))  # MNRL: each anchor's own positive
    expected = alpha * ranking + (1 - alpha) * _hand_divergence(ours, _sims(TEACHER), temperature, kind)
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)


def test_scored_pairs_learn_the_teachers_cosines_and_alpha_1_is_the_plain_loss():
    task = get_task(options.EmbeddingOptions(scale=SCALE))
    batch = _batch([1, 1], 4)  # two scored pairs: texts 0-1 are the first sentences, 2-3 the second ones
    student, teacher = FixedStates(STUDENT[:4]), FixedStates(TEACHER[:4])
    got = task.distill_loss_sum(student, teacher, batch, Distillation(3.0, 0.0))  # the teacher term alone
    expected = sum((_cos(STUDENT[i], STUDENT[i + 2]) - _cos(TEACHER[i], TEACHER[i + 2])) ** 2 for i in (0, 1))
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)
    plain = task.loss_sum(student, batch)
    assert float(task.distill_loss_sum(student, teacher, batch, Distillation(3.0, 1.0)).detach()) == float(plain.detach())


def test_a_distilled_student_trains_and_loads_in_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    args = [*FAST, "task=embedding", "model.keep_layers=[1]", "finetune=distill", "finetune.teacher=tiny-bert"]
    cli(["train", *args, "finetune.hidden_weight=1", "trainer.log_every=1"], cwd=tmp_path)
    best = only_run_dir(tmp_path / "outputs") / "checkpoints" / "best"
    student = SentenceTransformer(str(best), device="cpu")
    assert student[0].auto_model.config.num_hidden_layers == 1
    vectors = student.encode(["a fine film", "a dull one"], convert_to_tensor=True)
    assert vectors.shape[0] == 2 and torch.isfinite(vectors).all()


@pytest.mark.parametrize(
    "option, says",
    [
        ("finetune.cache_teacher=true", "compares each row with the batch's other rows (in-batch similarities)"),
        ("finetune.augment=1", "task.family=embedding has other rows"),
    ],
)
def test_embedding_distillation_refuses_a_cache_and_transfer_rows(tmp_path, option, says):
    args = [*FAST, "task=embedding", "finetune=distill", "finetune.teacher=tiny-bert", option]
    proc = cli(["train", *args], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr[-2000:]
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error")]) == 1


def test_a_wider_teacher_with_the_same_vocabulary_distills_into_a_narrow_student(tmp_path):
    """Cosines do not depend on the width: MiniLM-L6 (384 wide, pretrained) teaches the 32-wide tiny BERT (its
    vocabulary); the hidden-state term, which needs equal widths, is refused in one line."""
    args = [*FAST, "task=embedding", "finetune=distill", "finetune.teacher=minilm-l6", "trainer.log_every=1"]
    (tmp_path / "ok").mkdir()
    cli(["train", *args], cwd=tmp_path / "ok")
    records = (only_run_dir(tmp_path / "ok" / "outputs") / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in records if "train/loss" in line]) == 3
    proc = cli(["train", *args, "finetune.hidden_weight=1"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "finetune.hidden_weight needs equal hidden sizes: student 32, teacher 384" in proc.stderr
