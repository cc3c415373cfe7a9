"""Every verb's typed schema, gathered at the edge: the schema modules (config.py, deploy_config.py, explain_config.py,
data_report_config.py, prune_config.py) do not know each other's verbs, and cli.register_configs puts these in Hydra's ConfigStore."""

from __future__ import annotations

from typing import Any

from llmft import config, data_report_config, deploy_config, explain_config, prune_config

MODULES = (config, deploy_config, explain_config, data_report_config, prune_config)


def schemas() -> dict[str, type]:
    """The schema of each verb."""
    return {
        "train": config.TrainConfig,
        "eval": config.EvalConfig,
        "generate": config.GenerateConfig,
        "serve": deploy_config.ServeConfig,
        "export": deploy_config.ExportConfig,
        "data": data_report_config.DataReportConfig,
        "explain": explain_config.ExplainConfig,
        "prune": prune_config.PruneConfig,
    }


def schema_named(name: str) -> Any:
    """The schema dataclass called `name` (Hydra names a node's type in its messages), or None."""
    return next((getattr(m, name) for m in MODULES if isinstance(getattr(m, name, None), type)), None)
