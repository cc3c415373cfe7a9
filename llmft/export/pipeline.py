"""One export, start to end: write the format into a fresh folder, load it back, verify it against the checkpoint,
record the result in export.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from llmft.deploy_config import ExportConfig, ExportFormat, ExportQuantize
from llmft.errors import UserError
from llmft.export.fusion import DISABLED_OPTIMIZERS, fuse_for_ort
from llmft.export.gguf import check_gguf, gguf_runner, write_gguf
from llmft.export.merged import check_adapter, load_merged, write_merged
from llmft.export.onnx import copy_sentence_transformers_files, export_onnx, onnx_session
from llmft.export.quantize import quantize_int8
from llmft.export.seq2seq_onnx import SEQ2SEQ_FILES, export_seq2seq, seq2seq_runner
from llmft.export.source import Source
from llmft.export.verify import (
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_MIN_AGREEMENT_QUANTIZED,
    Runner,
    Verification,
    onnx_runner,
    torch_runner,
    verify,
)

EXPORT_JSON = "export.json"


def default_output(run_dir: Path, config: ExportConfig) -> Path:
    """<run>/export/<format>[-int8]."""
    suffix = "-int8" if config.quantize is ExportQuantize.int8 else ""
    return run_dir / "export" / f"{config.format.value}{suffix}"


def _onnx(source: Source, config: ExportConfig, out: Path) -> Callable[[], Runner]:
    if source.head.generates:  # an encoder-decoder: optimum's three graphs, verified by greedy decoding
        export_seq2seq(source.plain_model(), source.tokenizer, out, config.opset)
        if config.quantize is ExportQuantize.int8:
            for name in SEQ2SEQ_FILES:
                quantize_int8(out / name)
        return lambda: seq2seq_runner(out, onnx_session)
    names = source.input_names()
    path = export_onnx(source.plain_model(), source.tokenizer, source.head, names, out, config.opset)
    copy_sentence_transformers_files(source.folder, out)
    if not source.head.cache:  # a decoder's KV-cache graph is left as exported (its fusions are not measured here)
        fuse_for_ort(path)
    if config.quantize is ExportQuantize.int8:
        quantize_int8(path)
    return lambda: onnx_runner(onnx_session(path))


def _merged(source: Source, config: ExportConfig, out: Path) -> Callable[[], Runner]:
    write_merged(source, out)
    return lambda: torch_runner(load_merged(out, source.task.auto_class_name), source.head)


def _gguf(source: Source, config: ExportConfig, out: Path) -> Callable[[], Runner]:
    path = write_gguf(source, out, config.quantize)
    return lambda: gguf_runner(path, source.head)


def check_supported(source: Source, config: ExportConfig) -> None:
    """Refuse, before any file is touched, a format this run cannot take (one line)."""
    if config.format is ExportFormat.gguf:
        check_gguf(source)
    elif config.format is ExportFormat.merged:
        check_adapter(source)


WRITERS = {ExportFormat.onnx: _onnx, ExportFormat.merged: _merged, ExportFormat.gguf: _gguf}


def min_agreement(config: ExportConfig) -> float:
    if config.min_agreement is not None:
        return config.min_agreement
    return DEFAULT_MIN_AGREEMENT_QUANTIZED if config.quantize is ExportQuantize.int8 else DEFAULT_MIN_AGREEMENT


def check_output(out: Path) -> None:
    """`out` must be new, empty, or an earlier export (which is replaced whole); anything else is refused."""
    if out.is_symlink():  # replacing it whole would remove the link, not the export it points to
        raise UserError(
            f"output={out} is a symbolic link (to {os.readlink(out)}); name the folder itself, e.g. output={out.resolve()}"
        )
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / EXPORT_JSON).is_file())):
        raise UserError(f"output={out} exists and is not an llmft export; name a new or empty folder")


def run_export(source: Source, config: ExportConfig, batches: list[dict[str, Any]], rows: int, out: Path) -> Verification:
    """Write the export in `out` (replaced whole), verify it on `batches` (`rows` test rows); returns the verification
    (export.json records it)."""
    import shutil

    check_supported(source, config)
    check_output(out)
    if out.exists():
        shutil.rmtree(out)  # a stale model.onnx.data or GGUF of an earlier export must not survive beside the new one
    out.mkdir(parents=True)
    record = {
        "format": config.format.value,
        "quantize": config.quantize.value,
        "run": str(source.run_dir.resolve()),
        "checkpoint": str(source.folder.resolve()),
        **(_onnx_record(source) if config.format is ExportFormat.onnx else {}),
    }
    _write_record(out, {**record, "status": "incomplete"})  # marks the folder as an export: a rerun may replace it
    exported = WRITERS[config.format](source, config, out)()
    result = verify(exported, torch_runner(source.model, source.head), batches, source.head, min_agreement(config))
    _write_record(
        out,
        {
            **record,
            "status": "verified" if result.passed else "disagrees",
            "passed": result.passed,
            "agreement": round(result.agreement, 6),
            "agreeing": result.agreeing,
            "compared": result.compared,
            "compared_items": result.item,
            "max_abs_logit_diff": result.max_abs_diff,
            "min_agreement": result.min_agreement,
            "test_rows": rows,
        },
    )
    return result


def _onnx_record(source: Source) -> dict[str, Any]:
    """What a reader of an ONNX export needs: the graph's file and the onnxruntime fusions to leave off."""
    return {"model_file": source.head.model_file, "disabled_optimizers": list(DISABLED_OPTIMIZERS)}


def _write_record(out: Path, record: dict[str, Any]) -> None:
    (out / EXPORT_JSON).write_text(json.dumps(record, indent=2) + "\n")
