"""The schemas of the deployment verbs, `llmft serve` and `llmft export` (config.py holds the training ones;
cli.schemas gathers every verb's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from llmft.config import ConfigError, Device, GenerationConfig, ModelConfig


class ExportFormat(str, Enum):
    onnx = "onnx"  # model.onnx with dynamic batch and sequence axes, tokenizer and config beside it
    merged = "merged"  # a LoRA adapter folded into a plain Hugging Face folder
    gguf = "gguf"  # decoders (Llama architecture), for llama.cpp-based runtimes


class ServeBackend(str, Enum):
    torch = "torch"  # the run's PyTorch checkpoint
    onnx = "onnx"  # the run's verified ONNX export (llmft export), on onnxruntime (CPU)
    vllm = "vllm"  # hand over to vLLM's OpenAI server (GPU) on the run's checkpoint or its adapters


class ExportQuantize(str, Enum):
    none = "none"  # onnx: fp32; gguf: f16
    int8 = "int8"  # onnx: dynamic int8 weights (onnxruntime); gguf: q8_0


@dataclass
class ServeConfig:
    run: Optional[str] = None  # a train run folder (or give model=..., or runs=[...])
    runs: Optional[list[str]] = None  # LoRA runs kept as adapters (finetune.merge=false) on one base: one model id each
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name_or_path=""))  # or serve a model: model=smollm2-135m
    generation: GenerationConfig = field(
        default_factory=GenerationConfig
    )  # generation.* overrides apply on the run's task.generation
    checkpoint: str = "best"
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8000
    api_key: Optional[str] = None  # when set, every request needs `Authorization: Bearer <api_key>`
    max_batch_size: int = 8  # requests run together as one batch
    batch_window_ms: float = 10.0  # how long the first queued request waits for others to join its batch
    device: Device = Device.auto
    backend: ServeBackend = ServeBackend.torch
    export: Optional[str] = None  # backend=onnx: the export folder; default <run>/export/onnx-int8 if there, else onnx

    def __post_init__(self) -> None:
        if sum([self.run is not None, bool(self.runs), bool(self.model.name_or_path)]) != 1:
            raise ConfigError("serve needs exactly one of run=<run folder>, runs=[<adapter run>,...] or model=<model option>")
        if self.runs is not None and len(set(self.runs)) != len(self.runs):
            raise ConfigError(f"runs= names a run twice: {self.runs}")
        if self.backend is ServeBackend.onnx and self.run is None:
            raise ConfigError("backend=onnx serves a run's ONNX export: give run=<run folder> (model= serves PyTorch only)")
        if self.export is not None and self.backend is not ServeBackend.onnx:
            raise ConfigError("export=<folder> names the ONNX export backend=onnx serves; add backend=onnx")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        if self.max_batch_size < 1 or self.batch_window_ms < 0:
            raise ConfigError("max_batch_size must be >= 1 and batch_window_ms >= 0")
        if self.api_key is not None and not str(self.api_key).strip():
            raise ConfigError("api_key is empty; give a key or leave it unset")


@dataclass
class ExportConfig:
    run: str = "???"  # a train run folder
    format: ExportFormat = ExportFormat.onnx
    quantize: ExportQuantize = ExportQuantize.none
    output: Optional[str] = None  # default: <run>/export/<format>[-int8]
    checkpoint: str = "best"  # best | last | a folder
    verify_rows: int = 256  # test rows the exported model and the checkpoint are compared on
    min_agreement: Optional[float] = None  # below it the export fails; default 0.99, 0.95 when quantized
    batch_size: int = 32  # verification batches
    opset: int = 18  # ONNX opset

    def __post_init__(self) -> None:
        if self.verify_rows < 1 or self.batch_size < 1:
            raise ConfigError(f"export: verify_rows and batch_size must be >= 1, got {self.verify_rows} and {self.batch_size}")
        if self.min_agreement is not None and not 0 < self.min_agreement <= 1:
            raise ConfigError(f"export: min_agreement must be in (0, 1], got {self.min_agreement}")
        if self.format is ExportFormat.merged and self.quantize is not ExportQuantize.none:
            raise ConfigError(
                "export format=merged writes a plain Hugging Face folder; quantize=int8 applies to format=onnx|gguf"
            )
