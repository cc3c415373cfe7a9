"""What the GPU check ran on: the accelerator, the versions that matter, and the measured bf16 matmul rate (the
ceiling MFU is read against, beside the datasheet's).

    python bench/gpu/machine.py                 # a few lines for the summary
    python bench/gpu/machine.py --peak-tflops   # the datasheet's dense bf16 TFLOP/s of this GPU (empty if unknown)
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata

# dense bf16 tensor-core TFLOP/s by the vendors' datasheets (SXM parts; the H200's arithmetic is the H100's)
DATASHEET_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}


def peak_tflops() -> str:
    import torch

    if not torch.cuda.is_available():
        return ""
    name = torch.cuda.get_device_name()
    if "PCIe" in name or "NVL" in name:  # slower clocks than the SXM parts: give the rate by hand (--peak-tflops)
        return os.environ.get("GPU_PEAK_TFLOPS", "")
    return os.environ.get("GPU_PEAK_TFLOPS", next((str(v) for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), ""))


def matmul_tflops(n: int = 8192, repeats: int = 10) -> float:
    """bf16 n x n x n products on random data (never zeros: they run faster), timed with CUDA events after warm-up."""
    import torch

    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (start.elapsed_time(end) / 1e3) / 1e12


def versions() -> str:
    names = ("torch", "transformers", "datasets", "hydra-core", "omegaconf", "peft", "accelerate", "pyarrow", "numpy")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} -")
    return ", ".join(found)


def main() -> None:
    if sys.argv[1:] == ["--peak-tflops"]:
        print(peak_tflops())
        return
    import torch

    print(f"python {platform.python_version()}, {os.cpu_count()} cores; {versions()}")
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"llmft checkout: {sha or 'no git here'}")
    if not torch.cuda.is_available():
        print("accelerator: none (CPU)")
        return
    props = torch.cuda.get_device_properties(0)
    print(
        f"accelerator: {props.name}, {props.total_memory / 2**30:.1f} GiB, {props.multi_processor_count} SMs, "
        f"CUDA {torch.version.cuda}, bf16 supported: {torch.cuda.is_bf16_supported()}"
    )
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.max.sm,power.limit", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"nvidia-smi (driver, SM clock, max SM clock, power limit): {smi or '-'}")
    print(
        f"bf16 matmul 8192^3, measured: {matmul_tflops():.0f} TFLOP/s; datasheet dense bf16 used for MFU: {peak_tflops() or '-'} TFLOP/s"
    )


if __name__ == "__main__":
    main()
