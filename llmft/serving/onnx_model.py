"""`llmft serve backend=onnx`: a run's verified ONNX export (`llmft export format=onnx`) on onnxruntime (CPU), answering
the batcher like ServedModel does. Classifiers: labels and scores are read as `tasks.classification.classify` reads the
PyTorch logits (`classify_with`). Embedding runs: the graph's token states go through the task's own `encode` (its
Pooling and Normalize), as the torch backend's /v1/embeddings does. Decoders (the export's KV-cache graph) and seq2seq
runs (optimum's encoder and decoder graphs): transformers' `generate` drives the graphs (inference.onnx_lm) inside the
torch backend's own ServedModel, so completions and chats (sampling, seeds, stop strings, logprobs, n, streaming) take
the same code path as with backend=torch. QA and multiple-choice runs have no route here in either backend."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Hashable, Optional

import numpy as np

from llmft import tasks
from llmft.config import GenerationConfig, TrainConfig
from llmft.errors import UserError
from llmft.inference.classify import classify_with
from llmft.inference.onnx_lm import OnnxCausalLM, OnnxSeq2SeqLM
from llmft.serving.served_model import ServedModel, check_single_text, model_sampling_defaults, refuse_too_long
from llmft.tasks.base import Task

EXPORT_JSON = "export.json"  # written by llmft.export.pipeline; read here without importing the exporter (torch.onnx)
MODEL_FILE = "model.onnx"
GENERATING_HEADS = ("AutoModelForCausalLM", "AutoModelForSeq2SeqLM")  # served by ServedModel on the export's graphs
SERVED_HEADS = ("AutoModelForSequenceClassification", "AutoModel", *GENERATING_HEADS)  # those llmft.export.heads writes
SEQ2SEQ_DECODERS = ("decoder_model.onnx", "decoder_with_past_model.onnx")  # beside encoder_model.onnx (optimum's names)


def export_folder(run_dir: Path, export: Optional[str]) -> Path:
    """The export to serve: `export=` when given, else <run>/export/onnx-int8 when that export exists (the one made
    for CPU serving: int8 weights, ~3x the samples/s), else <run>/export/onnx."""
    if export is not None:
        return Path(export)
    int8 = run_dir / "export" / "onnx-int8"
    return int8 if (int8 / EXPORT_JSON).is_file() else run_dir / "export" / "onnx"


def check_export(folder: Path, run_dir: Path) -> dict[str, Any]:
    """export.json of a finished, verified ONNX export; else one line naming `llmft export` as the fix."""
    fix = f"run `llmft export run={run_dir} format=onnx` (add quantize=int8 for the int8 export)"
    record_file = folder / EXPORT_JSON
    record = _read_record(record_file, fix) if record_file.is_file() else None
    model_file = str((record or {}).get("model_file", MODEL_FILE))  # embeddings: onnx/model.onnx
    missing = [name for name in (EXPORT_JSON, model_file) if not (folder / name).is_file()]
    if len(missing) == 2:
        raise UserError(
            f"backend=onnx: no ONNX export in {folder} (no {EXPORT_JSON} and {MODEL_FILE}); {fix}, or name one with export=<folder>"
        )
    if record is not None and record.get("status") == "incomplete":
        raise UserError(
            f"backend=onnx: the export in {folder} never finished ({EXPORT_JSON} says status incomplete: it was "
            f"stopped while exporting); {fix}"
        )
    if missing:
        raise UserError(
            f"backend=onnx: the export in {folder} is torn: it has {EXPORT_JSON if record else model_file} but no "
            f"{missing[0]}; {fix}"
        )
    assert record is not None
    if record.get("format") != "onnx":
        raise UserError(f"backend=onnx: {folder} holds a {record.get('format')} export, not ONNX; {fix}")
    if record.get("status") != "verified" or not record.get("passed"):
        agreement = f" (agreement {record['agreement']} < {record.get('min_agreement')})" if "agreement" in record else ""
        raise UserError(
            f"backend=onnx: the export in {folder} did not pass its verification: status "
            f"{record.get('status')}{agreement}; {fix}, or name another export with export=<folder>"
        )
    return record


def _read_record(path: Path, fix: str) -> dict[str, Any]:
    """An export's export.json; a damaged one (torn, not JSON, not an object) is one line saying so."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as ex:
        raise UserError(f"backend=onnx: {path} is damaged (not JSON: {ex}); {fix}") from ex
    if not isinstance(record, dict):
        raise UserError(f"backend=onnx: {path} is damaged (not a JSON object); {fix}")
    return record


@dataclass
class OnnxModel:
    """An ONNX classifier or embedding export with the run's task and the export's tokenizer and labels (the app's
    Served)."""

    name: str
    task: Task
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Any
    id2label: dict[Any, str]
    max_length: int
    folder: Path
    max_batch_size: int = 8
    generation: GenerationConfig = field(default_factory=GenerationConfig)  # unused: nothing generates here
    generates: bool = False
    embeds: bool = False  # an embedding run's export (else a classifier's)
    chat_template: Optional[str] = None  # nothing is chatted with here

    @property
    def names(self) -> list[str]:
        return [self.name]

    @property
    def classifies(self) -> bool:
        return not self.embeds

    def adapter_for(self, model: Optional[str]) -> Optional[str]:
        return None  # one graph, no adapters

    def run_batch(self, key: Hashable, payloads: list[Any]) -> list[Any]:
        """The batcher's runner: texts to classify or to embed (the only work this backend takes)."""
        return self.embed_batch(payloads) if key == "embed" else self.classify_batch(payloads)

    def logits(self, batch: dict[str, Any]) -> Any:
        """The graph's logits for a tokenized batch: it is fed the inputs it names (token_type_ids zeros when the
        tokenizer gives none, as the export's verification fed it)."""
        ids = batch["input_ids"]
        feed = {i.name: batch[i.name] if i.name in batch else ids * 0 for i in self.session.get_inputs()}
        return self.session.run(None, feed)[0]

    def classify_batch(self, texts: list[str]) -> list[Any]:
        """Label and probabilities of each text, or the ServeError of a text longer than the model takes."""
        results, valid = refuse_too_long(texts, self.tokenizer, self.max_length, self.name)
        if valid:
            predictions = classify_with(
                self.logits,
                self.id2label,
                self.tokenizer,
                [[texts[i]] for i in valid],
                self.max_batch_size,
                self.max_length,
                self.task.cfg.input_truncation_side,
            )
            for i, prediction in zip(valid, predictions):
                results[i] = prediction
        return results

    def check_single_text(self) -> None:
        check_single_text(self.task, self.name)

    def embed_batch(self, texts: list[str]) -> list[Any]:
        """Each text's embedding and token count by the task's own `encode`, run on the graph's token states."""
        results, valid = refuse_too_long(texts, self.tokenizer, self.max_length, self.name)
        if valid:
            vectors = self.task.encode(
                _TokenStates(self), self.tokenizer, [texts[i] for i in valid], self.max_batch_size, self.max_length, "cpu"
            ).numpy()
            for i, vector in zip(valid, vectors):
                tokens = len(self.tokenizer(texts[i], add_special_tokens=True)["input_ids"])
                results[i] = {"embedding": vector, "tokens": tokens}
        return results


class _TokenStates:
    """The exported backbone called like the PyTorch one (`model(input_ids=, attention_mask=).last_hidden_state`), so
    the embedding task pools and normalizes the graph's states with its own code."""

    def __init__(self, served: OnnxModel) -> None:
        self.served = served

    def eval(self) -> "_TokenStates":
        return self

    def __call__(self, input_ids: Any, attention_mask: Any) -> SimpleNamespace:
        import torch

        batch = {"input_ids": input_ids.numpy().astype(np.int64), "attention_mask": attention_mask.numpy().astype(np.int64)}
        return SimpleNamespace(last_hidden_state=torch.from_numpy(self.served.logits(batch)))


def load_onnx_model(name: str, run_dir: Path, saved: TrainConfig, export: Optional[str], threads: int = 0) -> Any:
    """The run's verified ONNX export as a served model (a decoder's or seq2seq run's: a ServedModel on its graphs);
    another head is refused in one line."""
    from transformers import AutoConfig, AutoTokenizer

    task = tasks.get_task(saved.task)
    if task.auto_class_name not in SERVED_HEADS:
        raise UserError(
            f"backend=onnx serves classification, embedding, decoder (causal_lm) and seq2seq runs; this run's task is "
            f"{task.pipeline_tag} (backend=torch serves classifiers and generative runs)"
        )
    folder = export_folder(run_dir, export)
    record = check_export(folder, run_dir)
    disabled = list(record.get("disabled_optimizers", []))  # fusions the exporter found slower (llmft.export.fusion)
    session = _session(folder / str(record.get("model_file", MODEL_FILE)), run_dir, threads, disabled)
    config, tokenizer = AutoConfig.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    if task.auto_class_name in GENERATING_HEADS:
        decoders = (
            [_session(folder / f, run_dir, threads, disabled) for f in SEQ2SEQ_DECODERS] if config.is_encoder_decoder else []
        )
        return _generator(name, [session, *decoders], config, tokenizer, saved, folder)
    embeds = task.serve_kind == "embed"
    return OnnxModel(name, task, session, tokenizer, config.id2label, saved.model.max_length, folder, embeds=embeds)


def _session(model_file: Path, run_dir: Path, threads: int, disabled: list[str]) -> Any:
    """An onnxruntime CPU session of the graph, without the fusions the export lists as slower; a damaged graph is one
    line naming the fix."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per core)
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    except Exception as ex:  # onnxruntime's InvalidProtobuf, Fail, ...: a truncated or garbled graph
        first = str(ex).strip().splitlines()[0] if str(ex).strip() else type(ex).__name__
        raise UserError(
            f"backend=onnx: {model_file} is damaged ({first}); run `llmft export run={run_dir} format=onnx` again"
        ) from ex


def _generator(name: str, sessions: list[Any], config: Any, tokenizer: Any, saved: TrainConfig, folder: Path) -> ServedModel:
    """A decoder's or seq2seq run's export served as backend=torch serves its checkpoint: the task bound to the
    tokenizer as tasks.open_checkpoint binds it (prompts, chat template), the generation defaults of the export's
    generation_config.json (a copy of the checkpoint's)."""
    from transformers import GenerationConfig as HFGenerationConfig

    has_config = (folder / "generation_config.json").is_file()
    generation_config = HFGenerationConfig.from_pretrained(folder) if has_config else None
    try:
        model = (
            OnnxSeq2SeqLM(*sessions, config, generation_config)
            if len(sessions) == 3
            else OnnxCausalLM(sessions[0], config, generation_config)
        )
    except ValueError as ex:
        raise UserError(f"backend=onnx: {folder}: {ex}; export the run again with `llmft export`") from ex
    task = tasks.get_task(saved.task, tokenizer, saved.model.max_length)
    task.from_checkpoint(model)
    generation = model_sampling_defaults(task.cfg.generation, model)
    return ServedModel(name, task, model, tokenizer, saved.model.max_length, "cpu", generation)
