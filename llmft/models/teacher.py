"""The teacher of finetune=distill: a train run's best checkpoint, a checkpoint folder, or a `model=` option (its
pretrained weights with the task's head). Loaded on every process, in eval mode, without gradients; refused in one line
when its labels or its vocabulary are not the student's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from llmft.config import ModelConfig
from llmft.errors import UserError
from llmft.models import backbone
from llmft.paths import conf_dir
from llmft.runs.run_folder import RunFolder


def load_teacher(
    source: str, auto_class_name: str, head_kwargs: dict[str, Any], student: Any, student_tokenizer: Any, device: torch.device
) -> torch.nn.Module:
    """The teacher named by `finetune.teacher`, checked against the student, frozen, in eval mode, on `device`. Loading
    it leaves the RNG streams as they were (a random builtin teacher draws its weights), so the student's run is the
    one it would be without a teacher."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        teacher, tokenizer = _load(source, auto_class_name, head_kwargs)
    difference = mismatch(teacher, tokenizer, student, student_tokenizer)
    if difference:
        raise UserError(f"finetune.teacher={source} does not fit the student: {difference}")
    return teacher.eval().requires_grad_(False).to(device)


def _load(source: str, auto_class_name: str, head_kwargs: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
    path = Path(source).expanduser()
    if path.is_dir():
        folder = RunFolder(path).best if RunFolder(path).checkpoints.is_dir() else path
        if not folder.is_dir():
            raise UserError(f"finetune.teacher={source}: the run has no best checkpoint ({folder}); has it trained?")
        return backbone.load_finetuned(auto_class_name, folder), backbone.load_finetuned_tokenizer(folder)
    option = conf_dir() / "model" / f"{source}.yaml"
    if not option.is_file():
        options = sorted(p.stem for p in (conf_dir() / "model").glob("*.yaml"))
        raise UserError(
            f"finetune.teacher={source} is neither a folder (a train run or a checkpoint) nor a model option "
            f"({', '.join(options)})"
        )
    cfg = ModelConfig(**OmegaConf.to_container(OmegaConf.load(option)))  # type: ignore[arg-type]
    tokenizer_source, weights = backbone.resolve(cfg)
    tokenizer = backbone.load_tokenizer(tokenizer_source, cfg)
    return backbone.load_model(auto_class_name, weights, tokenizer, cfg, **dict(head_kwargs)), tokenizer


def _labels(config: Any) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label[i]) for i in sorted(id2label)] or [f"{config.num_labels} outputs"]


def _output_rows(model: Any) -> int | None:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    return int(weight.shape[0]) if weight is not None else None


def mismatch(teacher: Any, teacher_tokenizer: Any, student: Any, student_tokenizer: Any) -> str | None:
    """What makes the teacher's outputs incomparable with the student's, in words; None when they fit."""
    teacher_labels, student_labels = _labels(teacher.config), _labels(student.config)
    if teacher_labels != student_labels:
        return f"its labels {teacher_labels} are not the student's {student_labels}"
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        return (
            f"its vocabulary ({len(teacher_tokenizer)} tokens) is not the student's ({len(student_tokenizer)} tokens); "
            "both must read the same token ids"
        )
    teacher_rows, student_rows = _output_rows(teacher), _output_rows(student)
    if teacher_rows != student_rows:
        return f"its output layer has {teacher_rows} vocabulary rows, the student's {student_rows}"
    return None
