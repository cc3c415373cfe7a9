"""PyTorch -> ONNX: one graph of the head's logits with dynamic batch and sequence axes, tokenizer and config beside it.

Built on torch's dynamo exporter (`torch.onnx.export(dynamo=True)`, onnxscript). The TorchScript exporter
(`dynamo=False`) traces transformers 5's attention-mask code with the example's sequence length baked in: on a
different length its logits were off by up to 0.46 here; the dynamo exporter keeps the axes symbolic (differences
~1e-7). optimum's exporter is not used: it pins older transformers. No KV cache: decoders export logits for
input_ids/attention_mask (scoring and greedy decoding by re-running the prefix)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator

from llmft.errors import UserError
from llmft.export.heads import Head

MODEL_FILE = "model.onnx"


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
                kwargs["use_cache"] = False  # no KV cache in the graph
            result = self.model(**kwargs)
            return tuple(getattr(result, name) for name in outputs)

    return Logits().eval()


def export_onnx(model: Any, tokenizer: Any, head: Head, input_names: list[str], out: Path, opset: int) -> Path:
    """Write out/model.onnx (+ config.json, tokenizer files); returns the model path."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    example = tuple(
        torch.full((2, 8), 5, dtype=torch.long)
        if n == "input_ids"
        else (torch.ones if n == "attention_mask" else torch.zeros)((2, 8), dtype=torch.long)
        for n in input_names
    )
    try:
        with warnings.catch_warnings(), _quiet("torch.onnx", "torch.export", "torch._dynamo"):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _logits_module(model, input_names, head.outputs),
                example,
                dynamo=True,
                opset_version=opset,
                input_names=input_names,
                output_names=list(head.outputs),
                dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in input_names),),
                verbose=False,
            )  # one entry: *inputs
    except Exception as ex:  # noqa: BLE001 - torch's exporter raises many types; the first line says what failed
        cause = ex.__cause__ or ex  # torch's wrapper says "step 1/3 failed"; the cause says why
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise UserError(f"the ONNX exporter could not export {type(model).__name__}: {first}") from ex
    path = out / MODEL_FILE
    program.save(str(path))
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return path


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
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


def onnx_session(path: Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session (threads=0: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
