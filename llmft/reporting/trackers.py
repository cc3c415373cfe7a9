"""Experiment trackers by config (`logger=tensorboard|wandb|mlflow|none`); each is an optional extra,
imported only when chosen. They receive the same records as metrics.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Protocol

from llmft.config import LoggerConfig, LoggerKind
from llmft.errors import UserError
from llmft.runs.run_folder import RunFolder


class Sink(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in record.items()
        if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class TensorBoardSink:
    def __init__(self, log_dir: Path, config: dict[str, Any]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as ex:
            raise UserError("logger=tensorboard needs the tensorboard package: pip install 'llmft[tensorboard]'") from ex
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in _flat(config).items()))

    def log(self, record: dict[str, Any]) -> None:
        for key, value in _scalars(record).items():
            self.writer.add_scalar(key, value, global_step=record["step"])

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    def __init__(self, cfg: LoggerConfig, out_dir: Path, config: dict[str, Any]):
        try:
            import wandb
        except ImportError as ex:
            raise UserError(
                "logger=wandb needs the wandb package: pip install wandb (WANDB_MODE=offline works without network)"
            ) from ex
        self.run = wandb.init(project=cfg.project, name=cfg.run_name or out_dir.name, dir=str(out_dir), config=config)

    def log(self, record: dict[str, Any]) -> None:
        self.run.log(_scalars(record), step=record["step"])

    def close(self) -> None:
        self.run.finish()


class MlflowSink:
    def __init__(self, cfg: LoggerConfig, out_dir: Path, config: dict[str, Any]):
        try:
            import mlflow
        except ImportError as ex:
            raise UserError("logger=mlflow needs the mlflow package: pip install mlflow") from ex
        self.mlflow = mlflow
        mlflow.set_tracking_uri(cfg.tracking_uri or f"sqlite:///{RunFolder(out_dir).mlflow_db.resolve()}")
        mlflow.set_experiment(cfg.project)
        mlflow.start_run(run_name=cfg.run_name or out_dir.name)
        mlflow.log_params({k: str(v)[:250] for k, v in _flat(config).items()})

    def log(self, record: dict[str, Any]) -> None:
        self.mlflow.log_metrics({k.replace("/", "_"): v for k, v in _scalars(record).items()}, step=record["step"])

    def close(self) -> None:
        self.mlflow.end_run()


def build_sink(cfg: LoggerConfig, out_dir: Path, config: dict[str, Any]) -> Optional[Sink]:
    """The tracker chosen by `logger=...`, or None."""
    if cfg.kind is LoggerKind.tensorboard:
        return TensorBoardSink(RunFolder(out_dir).tensorboard, config)
    if cfg.kind is LoggerKind.wandb:
        return WandbSink(cfg, out_dir, config)
    if cfg.kind is LoggerKind.mlflow:
        return MlflowSink(cfg, out_dir, config)
    return None
