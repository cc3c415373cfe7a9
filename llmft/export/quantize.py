"""Dynamic int8 quantization of an ONNX graph for CPU, by onnxruntime's quantizer: weights stored as int8 (QInt8),
activations quantized on the fly per batch. No calibration data is needed. Run on the fused graph
(llmft.export.fusion), whose Q/K/V projections are plain MatMuls, so every projection becomes an integer matmul."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Int8Setting:
    """One quantizer setting (bench/int8_settings.py measures them; DEFAULT_INT8 is the exporter's)."""

    per_channel: bool = False  # one scale per output column of each weight, not one per tensor
    keep_last: int = 0  # the graph's last N MatMuls (a classifier's pooler and classifier) stay fp32
    matmuls_only: bool = False  # only MatMul nodes are quantized: the embeddings' Gather stays fp32


DEFAULT_INT8 = Int8Setting(per_channel=True, keep_last=2, matmuls_only=True)  # bench/int8_settings.py: 2.75x, 99.5%


def last_matmuls(path: Path, count: int) -> list[str]:
    """Names of the graph's last `count` MatMul/Gemm nodes, as the quantizer sees them: its dynamic mode rewrites a
    Gemm into a MatMul named <gemm>_MatMul before it reads nodes_to_exclude (onnxruntime 1.32), so both names."""
    import onnx

    if count == 0:
        return []
    graph = onnx.load(str(path), load_external_data=False).graph
    nodes = [n for n in graph.node if n.op_type in ("MatMul", "Gemm")][-count:]
    return [name for n in nodes for name in (n.name, n.name + "_MatMul")]


def quantize_file(source: Path, target: Path, setting: Int8Setting = DEFAULT_INT8) -> Path:
    """Write the int8 version of the graph at `source` to `target`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + "_prepared.onnx")
    try:
        # onnxruntime's advised pre-pass (shape inference, fusions); its symbolic shape inference fails on BERT graphs
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            prepared,
            target,
            weight_type=QuantType.QInt8,
            per_channel=setting.per_channel,
            nodes_to_exclude=last_matmuls(prepared, setting.keep_last),
            op_types_to_quantize=["MatMul"] if setting.matmuls_only else None,
        )
    finally:
        prepared.unlink(missing_ok=True)
    return target


def quantize_int8(path: Path, setting: Int8Setting = DEFAULT_INT8) -> Path:
    """Replace the fp32 graph at `path` by its int8 version (same file name, so a reader loads model.onnx either way)."""
    fp32 = path.with_name(path.stem + "_fp32.onnx")
    path.replace(fp32)
    data = fp32.with_name(path.name + ".data")  # weights the exporter wrote beside a large graph
    try:
        quantize_file(fp32, path, setting)
    finally:
        for leftover in (fp32, data):
            leftover.unlink(missing_ok=True)
    return path
