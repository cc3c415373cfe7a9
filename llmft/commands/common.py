"""Helpers every verb uses at the Hydra edge: typed configs, the run folder, saved run configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from llmft.cli_errors import describe
from llmft.config import TaskConfig
from llmft.errors import UserError, unknown_key_message
from llmft.runs.run_folder import RunFolder
from llmft.tasks import FAMILIES, check_options

T = TypeVar("T")


def _check_known_keys(node: Any, schema_node: Any, prefix: str = "") -> None:
    """Reject keys the schema lacks (Hydra's `+key=value` bypasses struct mode)."""
    if not isinstance(node, DictConfig) or not isinstance(schema_node, DictConfig):
        return
    if schema_node._is_none() and isinstance(schema_node._metadata.ref_type, type):  # an Optional[Schema] that is None
        schema_node = OmegaConf.structured(schema_node._metadata.ref_type)
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
    try:
        merged = OmegaConf.merge(base, {k: v for k, v in cfg.items() if k != "hydra"})
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except InterpolationResolutionError as ex:  # `${python:...}`, `seed='${seed}'`, `${oc.env:UNSET}`: one line
        raise UserError(describe(ex) or str(ex)) from ex


def _task_schema(task: DictConfig) -> type:
    """The options schema of the task node's family (the schema's own default family when the node names none)."""
    typed = OmegaConf.get_type(task)  # a composed node carries its YAML's schema; a saved one is a plain dict
    return check_options(
        task.get("family") or TaskConfig.family,
        typed if isinstance(typed, type) and issubclass(typed, TaskConfig) else TaskConfig,
    )


def _legacy_task_keys(saved: DictConfig) -> DictConfig:
    """A run saved before options were per family holds every family's keys in `task`: drop those of other families
    (they were at their defaults or ignored); a key no family knows is still refused."""
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


def continue_in(run_dir: Path) -> None:
    """A resumed run logs into its own folder: the job's log file (<verb>.log) moves to `run_dir` (appended to the run's),
    and the folder Hydra made for this job, holding nothing else, is removed (a single run, not a sweep's job)."""
    import logging

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    job_dir = hydra_output_dir().resolve()
    if job_dir == Path(run_dir).resolve() or HydraConfig.get().mode != RunMode.RUN:
        return
    for logger in [
        logging.getLogger(),
        *(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)),
    ]:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == job_dir:
                logger.removeHandler(handler)
                handler.close()
                old, new = Path(handler.baseFilename), Path(run_dir) / Path(handler.baseFilename).name
                with open(new, "a", encoding="utf-8") as log:
                    log.write(old.read_text(encoding="utf-8", errors="replace") if old.is_file() else "")
                old.unlink(missing_ok=True)
                moved = logging.FileHandler(new, mode="a", encoding=handler.encoding)
                moved.setLevel(handler.level)
                moved.setFormatter(handler.formatter)
                for log_filter in handler.filters:
                    moved.addFilter(log_filter)
                logger.addHandler(moved)
    if RunFolder(job_dir).holds_only_hydra_files():
        RunFolder(job_dir).remove_unstarted()


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
        loaded = OmegaConf.load(path)
        refuse_interpolations(loaded, path)
    except UserError:
        raise
    except Exception as ex:  # not YAML
        raise UserError(f"the config saved in {path} is damaged (not YAML: {str(ex).splitlines()[0]})") from ex
    try:
        return to_typed(_legacy_task_keys(loaded), schema)  # type: ignore[arg-type]
    except UserError as ex:
        raise UserError(f"the config saved in {path} no longer validates: {ex}") from ex
    except Exception as ex:  # omegaconf validation errors
        raise UserError(f"the config saved in {path} no longer validates: {describe(ex) or ex}") from ex


def refuse_interpolations(node: Any, path: Path, prefix: str = "") -> None:
    """A saved run config is data: its values were resolved when the run was written (`save_resolved_config`). An
    interpolation in it (`${oc.env:SECRET}`, ...) would be resolved on the machine that loads it, so it is refused."""
    from omegaconf import ListConfig

    keys = node.keys() if isinstance(node, DictConfig) else range(len(node)) if isinstance(node, ListConfig) else []
    for key in keys:
        full_key = f"{prefix}{key}" if isinstance(key, str) else f"{prefix.rstrip('.')}[{key}]"
        if OmegaConf.is_interpolation(node, key):
            raise UserError(
                f"{path} holds an interpolation in '{full_key}' ({node._get_node(key)._value()}); a saved run "
                "config is data and is never resolved when loaded: write the value itself there"
            )
        refuse_interpolations(node._get_node(key), path, f"{full_key}.")


def save_resolved_config(resolved: dict[str, Any], path: Path) -> None:
    """Write the run's config with every interpolation resolved (what the run used), a literal `${` escaped, so loading
    it never resolves anything (see `refuse_interpolations`)."""

    def escaped(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: escaped(v) for k, v in value.items()}
        if isinstance(value, list):
            return [escaped(v) for v in value]
        return value.replace("${", "\\${") if isinstance(value, str) else value

    tmp = RunFolder.temp_file(path)
    OmegaConf.save(OmegaConf.create(escaped(resolved)), tmp)
    tmp.replace(path)


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
    # bitsandbytes' CPU backend (llmft[qlora]) looks for a hub kernel when peft imports it: its notes are not the user's
    for name in ("bitsandbytes", "kernels"):
        logging.getLogger(name).setLevel(logging.ERROR)
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
