"""Which int8 setting of the sentiment run's ONNX graph keeps PyTorch's predictions and speed: dynamic QInt8 per
tensor (llmft's `quantize=int8`), per channel, with the sensitive nodes kept in fp32 (the word embeddings' Gather and
the last MatMul/Gemm: pooler and classifier), and static QDQ calibrated on training rows.

    python bench/int8_settings.py --run <sentiment run>     # after `llmft export run=<run>` (fp32 in <run>/export/onnx)

One intra-op thread; each engine scores the whole test split after a warm-up pass (bench/export_speed.py's
batches); agreement = rows where the engine's label equals PyTorch fp32's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_speed import measure, onnx_engine, test_batches, torch_engine  # noqa: E402


def last_matmuls(path: Path, count: int) -> list[str]:
    """Names of the graph's last `count` MatMul/Gemm nodes (the pooler's dense layer and the classifier)."""
    import onnx

    nodes = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in ("MatMul", "Gemm")]
    return nodes[-count:]


def quantized(fp32: Path, out: Path, setting: str, calibration: list[dict[str, np.ndarray]]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out.mkdir(parents=True, exist_ok=True)
    prepared, path = out / "prepared.onnx", out / "model.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    if setting == "static":

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter(calibration)

            def get_next(self) -> Any:
                return next(self.items, None)

        quantize_static(
            prepared, path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
            activation_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
            extra_options={"ActivationSymmetric": True},
        )  # fmt: skip
        return path
    keep = last_matmuls(prepared, 2) if "keep" in setting else []
    quantize_dynamic(
        prepared, path, weight_type=QuantType.QInt8, per_channel="channel" in setting, nodes_to_exclude=keep,
        op_types_to_quantize=["MatMul"] if "keep" in setting else None,
    )  # fmt: skip
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--calibration-batches", type=int, default=4)
    args = parser.parse_args()
    batches = test_batches(args.run, args.batch_size)
    reference = torch_engine(args.run, 1)
    torch_labels = [reference(inputs).argmax(-1) for inputs, _ in batches]
    base_accuracy, base_speed = measure(reference, batches)
    fp32 = args.run / "export" / "onnx" / "model.onnx"
    calibration = [inputs for inputs, _ in test_batches(args.run, args.batch_size, "train")[: args.calibration_batches]]
    print("| setting | test accuracy | delta (points) | agreement with PyTorch | samples/s, 1 thread | vs PyTorch fp32 |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| PyTorch fp32 | {base_accuracy:.4f} | | | {base_speed:.1f} | 1.00x |")
    with tempfile.TemporaryDirectory() as tmp:
        for setting in ("onnx fp32", "dynamic per-tensor", "dynamic per-channel", "dynamic per-channel keep", "static"):
            path = (
                fp32 if setting == "onnx fp32" else quantized(fp32, Path(tmp) / setting.replace(" ", "-"), setting, calibration)
            )
            engine = onnx_engine(path.parent, 1)
            agree = sum(int((engine(inputs).argmax(-1) == t).sum()) for (inputs, _), t in zip(batches, torch_labels))
            accuracy, speed = measure(engine, batches)
            rows = sum(len(labels) for _, labels in batches)
            print(
                f"| {setting} | {accuracy:.4f} | {100 * (accuracy - base_accuracy):+.1f} | {agree / rows:.4f} "
                f"| {speed:.1f} | {speed / base_speed:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
