"""Dynamic int8 quantization of an ONNX graph for CPU, by onnxruntime's quantizer: weights stored as int8 (QInt8),
activations quantized on the fly per batch. No calibration data is needed."""

from __future__ import annotations

from pathlib import Path


def quantize_int8(path: Path) -> Path:
    """Replace the fp32 graph at `path` by its int8 version (same file name, so a reader loads model.onnx either way)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = path.with_name(path.stem + "_fp32.onnx")
    prepared = path.with_name(path.stem + "_prepared.onnx")
    path.replace(fp32)
    data = fp32.with_name(path.name + ".data")  # weights the exporter wrote beside a large graph
    try:
        # onnxruntime's advised pre-pass (shape inference, fusions); its symbolic shape inference fails on BERT graphs
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(prepared, path, weight_type=QuantType.QInt8)
    finally:
        for leftover in (fp32, prepared, data):
            leftover.unlink(missing_ok=True)
    return path
