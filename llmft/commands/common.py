"""Helpers every verb uses at the Hydra edge: typed configs, the run folder, saved run configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from llmft.errors import UserError, unknown_key_message
from llmft.runs.run_folder import RunFolder

T = TypeVar("T")


def _check_known_keys(node: Any, schema_node: Any, prefix: str = "") -> None:
    """Reject keys the schema lacks (Hydra's `+key=value` bypasses struct mode)."""
    if not isinstance(node, DictConfig) or not isinstance(schema_node, DictConfig):
        return
    known = set(schema_node.keys())  # not `in`: OmegaConf says a key holding ??? is absent
    for key in node.keys():
        if key == "hydra" and not prefix:
            continue
        full_key = f"{prefix}{key}"
        if key not in known:
            raise UserError(unknown_key_message(full_key, [str(k) for k in schema_node.keys()]))
        _check_known_keys(node._get_node(key), schema_node._get_node(key), f"{full_key}.")


def to_typed(cfg: DictConfig, schema: type[T]) -> T:
    """Validate a composed config against its schema and return the dataclass (runs cross-field checks). A `task`
    node is checked against its family's options schema (llmft/tasks/options.py)."""
    base = OmegaConf.structured(schema)
    if "task" in base and isinstance(cfg.get("task"), DictConfig):
        base = OmegaConf.merge(base, {"task": OmegaConf.structured(_task_schema(cfg.task))})
    _check_known_keys(cfg, base)
    merged = OmegaConf.merge(base, {k: v for k, v in cfg.items() if k != "hydra"})
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def _task_schema(task: DictConfig) -> type:
    """The options schema of the task node's family (the schema's own default family when the node names none)."""
    from llmft.config import TaskConfig
    from llmft.tasks import check_options

    typed = OmegaConf.get_type(task)  # a composed node carries its YAML's schema; a saved one is a plain dict
    return check_options(task.get("family") or TaskConfig.family, typed if isinstance(typed, type) and issubclass(
        typed, TaskConfig) else TaskConfig)


def _legacy_task_keys(saved: DictConfig) -> DictConfig:
    """A run saved before options were per family holds every family's keys in `task`: drop those of other families
    (they were at their defaults or ignored); a key no family knows is still refused."""
    from llmft.tasks import FAMILIES

    task = saved.get("task")
    if not isinstance(task, DictConfig):
        return saved
    own = set(OmegaConf.structured(_task_schema(task)).keys())
    others = {k for f in FAMILIES.values() for k in OmegaConf.structured(f.options).keys()} - own
    for key in others & set(task.keys()):
        task.pop(key)
    return saved


def hydra_output_dir() -> Path:
    """The run folder Hydra picked for this job (run or multirun)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def user_overrides() -> list[str]:
    """The overrides the user typed for this job."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def load_run_config(run_dir: Path, schema: type[T]) -> T:
    """A run folder's saved config, validated against today's schema (never trusted as code)."""
    path = RunFolder(run_dir).saved_config
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    if not path.is_file():
        raise UserError(f"{run_dir} is not an llmft run folder: {path} is missing")
    try:
        saved = _legacy_task_keys(OmegaConf.load(path))
        return to_typed(saved, schema)  # type: ignore[arg-type]
    except UserError as ex:
        raise UserError(f"the config saved in {path} no longer validates: {ex}") from ex
    except Exception as ex:  # omegaconf validation errors
        from llmft.errors import describe

        raise UserError(f"the config saved in {path} no longer validates: {describe(ex) or ex}") from ex


def quiet_libraries() -> None:
    """Keep the terminal for llmft's own progress: no per-library progress bars or chatty INFO logs."""
    import logging

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    # transformers' warnings through the job's handlers (conf/hydra/job_logging/llmft.yaml): on the console and in
    # the run's log, instead of its own stderr handler; Python warnings likewise
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    logging.captureWarnings(True)
    for name in ("matplotlib", "PIL", "urllib3", "filelock", "fsspec"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # its CPU backend's note that it found no hub kernel
    logging.getLogger("datasets").setLevel(logging.CRITICAL)  # its read errors reach the user as our one-line error


def checkpoint_dir(run_dir: Path, checkpoint: str) -> Path:
    """`best`, `last`, or an explicit folder."""
    folder = RunFolder(run_dir).named_checkpoint(checkpoint) or Path(checkpoint)
    if not folder.is_dir():
        raise UserError(f"checkpoint not found: {folder} (did the run finish an evaluation?)")
    return folder


def apply_user_overrides(saved: Any, cfg: DictConfig, prefix: str) -> Any:
    """`saved` (a dataclass from a run folder) with the user's `<prefix>.x.y=...` overrides applied, the
    values taken from the composed, already-validated `cfg`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    node = OmegaConf.structured(saved)
    for override in OverridesParser.create().parse_overrides(user_overrides()):
        key = override.key_or_group
        if key.startswith(f"{prefix}."):
            OmegaConf.update(node, key[len(prefix) + 1 :], OmegaConf.select(cfg, key), merge=False)
    return OmegaConf.to_object(node)
