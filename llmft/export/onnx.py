"""PyTorch -> ONNX: one graph of the head's logits with dynamic batch and sequence axes, tokenizer and config beside it.

Built on torch's dynamo exporter (`torch.onnx.export(dynamo=True)`, onnxscript). The TorchScript exporter
(`dynamo=False`) traces transformers 5's attention-mask code with the example's sequence length baked in: on a
different length its logits were off by up to 0.46 here; the dynamo exporter keeps the axes symbolic (differences
~1e-7). optimum's exporter is not used: every optimum-onnx release pins transformers<4.58. Decoders export their logits
for input_ids/attention_mask/position_ids with their KV cache in optimum's naming (llmft.export.kv_cache)."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from llmft.errors import UserError
from llmft.export.fusion import DISABLED_OPTIMIZERS
from llmft.export.heads import Head
from llmft.export.kv_cache import cache_example, cache_module, cache_shape

EXAMPLE_SIZES = {"batch": 2, "choice": 3, "sequence": 8}  # the traced example's shape; distinct sizes, none 0 or 1
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def _logits_module(model: Any, input_names: list[str], outputs: tuple[str, ...]) -> Any:
    """The nn.Module the graph is traced from: input tensors in, the head's outputs as a tuple out."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            kwargs = dict(zip(input_names, inputs))
            if getattr(self.model.config, "use_cache", None) is not None:
                kwargs["use_cache"] = False  # no KV cache in this graph (decoders: kv_cache.cache_module)
            result = self.model(**kwargs)
            return tuple(getattr(result, name) for name in outputs)

    return Logits().eval()


def _plain_graph(model: Any, head: Head, input_names: list[str]) -> tuple[Any, tuple, Any, list[str], list[str]]:
    """(module, example, dynamic shapes, input names, output names) of a graph without a cache."""
    import torch

    shape = tuple(EXAMPLE_SIZES[axis] for axis in head.axes)
    example = tuple(
        torch.full(shape, 5, dtype=torch.long)
        if n == "input_ids"
        else (torch.ones if n == "attention_mask" else torch.zeros)(shape, dtype=torch.long)
        for n in input_names
    )
    axes = {i: torch.export.Dim(axis) for i, axis in enumerate(head.axes)}
    shapes = (tuple(axes for _ in input_names),)  # one entry: *inputs
    return _logits_module(model, input_names, head.outputs), example, shapes, input_names, list(head.outputs)


def _cache_graph(model: Any) -> tuple[Any, tuple, Any, list[str], list[str]]:
    """The same for a decoder with its KV cache (llmft.export.kv_cache)."""
    shape = cache_shape(model)
    example, shapes = cache_example(shape)
    inputs = ["input_ids", "attention_mask", "position_ids", *shape.past_names()]
    return cache_module(model, shape), example, shapes, inputs, ["logits", *shape.present_names()]


def export_onnx(model: Any, tokenizer: Any, head: Head, input_names: list[str], out: Path, opset: int) -> Path:
    """Write the graph at out/<head.model_file> (+ config.json, tokenizer files); returns the model path."""

    path = out / head.model_file
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = _cache_graph(model) if head.cache else _plain_graph(model, head, input_names)
    trace(*graph, opset, type(model).__name__).save(str(path))
    config = copy.deepcopy(model.config)
    if head.cache:
        config.use_cache = True  # the graph has one (the reference runs without: load_source turns it off)
    config.save_pretrained(out)
    if head.cache and getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)  # `llmft serve backend=onnx` takes its defaults as backend=torch does
    tokenizer.save_pretrained(out)
    return path


def trace(module: Any, example: tuple, shapes: Any, inputs: list[str], outputs: list[str], opset: int, what: str) -> Any:
    """torch's dynamo exporter on `module` (its ONNXProgram); a failure is one line naming `what` and the cause."""
    import torch

    try:
        with warnings.catch_warnings(), quiet("torch.onnx", "torch.export", "torch._dynamo"):
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                module,
                example,
                dynamo=True,
                opset_version=opset,
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes=shapes,
                verbose=False,
            )
    except Exception as ex:  # noqa: BLE001 - torch's exporter raises many types; the first line says what failed
        cause = ex.__cause__ or ex  # torch's wrapper says "step 1/3 failed"; the cause says why
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise UserError(f"the ONNX exporter could not export {what}: {first}") from ex


def copy_sentence_transformers_files(checkpoint: Path, out: Path) -> None:
    """A checkpoint in sentence-transformers' layout (modules.json) keeps it: its module files and folders (Pooling,
    Normalize) go beside the graph, so `SentenceTransformer(out, backend="onnx")` finds onnx/model.onnx."""
    modules = checkpoint / "modules.json"
    if not modules.is_file():
        return
    for name in SENTENCE_TRANSFORMERS_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, out / name)
    for entry in json.loads(modules.read_text()):
        if entry.get("path"):
            shutil.copytree(checkpoint / entry["path"], out / entry["path"])


@contextlib.contextmanager
def quiet(*names: str) -> Iterator[None]:
    """The named loggers at ERROR for the duration (the exporter logs every op registration it skips)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def onnx_session(path: Path, threads: int = 0, disabled_optimizers: Sequence[str] = DISABLED_OPTIMIZERS) -> Any:
    """An onnxruntime CPU session (threads=0: onnxruntime's default) without the fusions that slow the graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled_optimizers)
    )
