"""Which ONNX graph and int8 setting of the sentiment run keeps PyTorch's predictions and speed: the dynamo exporter's
graph as it comes (unfused) and fused by onnxscript's ort_fusions (llmft.export.fusion, `llmft export`'s graph), each
fp32 and int8 (dynamic QInt8 per tensor; per channel; per channel with the sensitive nodes kept in fp32: the word
embeddings' Gather and the last two MatMuls, pooler and classifier), with onnxruntime's SkipLayerNormFusion on
(its default) or off (llmft's sessions).

    python bench/int8_settings.py --run <sentiment run>

The graphs are exported here from the run's best checkpoint. One intra-op thread; each engine scores the whole test
split after a warm-up pass (bench/export_speed.py's batches); agreement = rows where the engine's label equals
PyTorch fp32's. The ratios within one run are the numbers to compare (a shared machine moves the absolute ones).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_speed import measure, test_batches, torch_engine  # noqa: E402

from llmft.commands.common import checkpoint_dir, load_run_config  # noqa: E402
from llmft.config import TrainConfig  # noqa: E402
from llmft.export.fusion import DISABLED_OPTIMIZERS, fuse_for_ort  # noqa: E402
from llmft.export.onnx import export_onnx, onnx_session  # noqa: E402
from llmft.export.quantize import Int8Setting, quantize_file  # noqa: E402
from llmft.export.source import load_source  # noqa: E402

SETTINGS = {  # row name -> (graph, int8 setting or None for fp32, onnxruntime fusions disabled)
    "ONNX fp32, unfused": ("unfused", None, ()),
    "ONNX fp32, fused": ("fused", None, DISABLED_OPTIMIZERS),
    "int8 per tensor, unfused (`quantize=int8` before)": ("unfused", Int8Setting(), ()),
    "int8 per tensor, fused, SkipLayerNormFusion on": ("fused", Int8Setting(), ()),
    "int8 per tensor, fused": ("fused", Int8Setting(), DISABLED_OPTIMIZERS),
    "int8 per channel, fused": ("fused", Int8Setting(per_channel=True), DISABLED_OPTIMIZERS),
    "int8 per channel, fused, pooler/classifier/embeddings fp32": (
        "fused",
        Int8Setting(per_channel=True, keep_last=2, matmuls_only=True),
        DISABLED_OPTIMIZERS,
    ),
}


def export_graphs(run: Path, folder: Path) -> dict[str, Path]:
    """The run's best checkpoint as the dynamo exporter writes it, and the same graph fused."""
    saved = load_run_config(run, TrainConfig)
    source = load_source(run, saved, checkpoint_dir(run, "best"))
    raw = export_onnx(source.plain_model(), source.tokenizer, source.head, source.input_names(), folder / "unfused", 18)
    (folder / "fused").mkdir()
    fused = folder / "fused" / raw.name
    shutil.copy2(raw, fused)
    print("fusions:", {k: v for k, v in fuse_for_ort(fused).items() if v}, flush=True)
    return {"unfused": raw, "fused": fused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--only", nargs="*", help="row names (substrings) to measure; default all")
    args = parser.parse_args()
    batches = test_batches(args.run, args.batch_size)
    rows = sum(len(labels) for _, labels in batches)
    reference = torch_engine(args.run, 1)
    torch_labels = [reference(inputs).argmax(-1) for inputs, _ in batches]
    base_accuracy, base_speed = measure(reference, batches)
    print("| setting | test accuracy | delta (points) | agreement with PyTorch | samples/s, 1 thread | vs PyTorch fp32 |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| PyTorch fp32 | {base_accuracy:.4f} | | | {base_speed:.1f} | 1.00x |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        graphs = export_graphs(args.run, Path(tmp))
        for i, (name, (graph, setting, disabled)) in enumerate(SETTINGS.items()):
            if args.only and not any(part in name for part in args.only):
                continue
            path = graphs[graph] if setting is None else quantize_file(graphs[graph], Path(tmp) / f"int8-{i}.onnx", setting)
            session = onnx_session(path, 1, disabled)
            names = [spec.name for spec in session.get_inputs()]

            def engine(batch: dict[str, np.ndarray]) -> np.ndarray:
                return session.run(None, {n: batch[n] for n in names})[0]

            agree = sum(int((engine(inputs).argmax(-1) == t).sum()) for (inputs, _), t in zip(batches, torch_labels))
            accuracy, speed = measure(engine, batches)
            print(
                f"| {name} | {accuracy:.4f} | {100 * (accuracy - base_accuracy):+.1f} | {agree / rows:.4f} "
                f"| {speed:.1f} | {speed / base_speed:.2f}x |",
                flush=True,
            )
    again = measure(reference, batches)[1]  # PyTorch once more: the machine's drift over the run
    print(f"\nPyTorch fp32 again at the end: {again:.1f} samples/s ({again / base_speed:.2f}x its first pass)")


if __name__ == "__main__":
    main()
