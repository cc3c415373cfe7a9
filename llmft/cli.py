"""`llmft VERB [overrides] [-m]`: the command-line edge. Only this module and commands/ touch Hydra."""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Any, Callable

VERBS = {
    "train": "fine-tune a backbone on a task, write a run folder",
    "eval": "re-evaluate a run's best checkpoint on a split or data set",
    "generate": "predict with a run's best checkpoint, for a prompt or a JSONL file",
    "serve": "serve a run (or a model) over HTTP: OpenAI-compatible API, batching, metrics",
    "data": "show what a task trains on: rows rendered as training renders them, counts, duplicates, leakage",
    "export": "export a run's checkpoint to ONNX (int8 optional), a merged HF folder or GGUF, verified on its test rows",
    "explain": "token attributions (Integrated Gradients) of a run's predictions: terminal, HTML page, PNG heatmap",
    "prune": "a smaller model from a run: remove attention heads or layers by importance, or magnitude sparsity",
    "sweep-report": "rank the jobs of a multirun folder: summary.csv/md/png (also written after every sweep)",
}
_USER_FULL_ERROR = "LLMFT_USER_FULL_ERROR"  # what the user set, before we set HYDRA_FULL_ERROR ourselves
GROUPS = ("model", "task", "finetune", "optimizer", "scheduler", "precision", "logger")

USAGE = """usage: llmft VERB [KEY=VALUE ...] [-m] [--help]

Verbs:
{verbs}

Config groups (pick one with GROUP=OPTION, override any field with GROUP.FIELD=VALUE):
{groups}

{schedule}

Examples:
  llmft train task=sentiment
  llmft train task=sentiment optimizer.lr=2e-5 scheduler=cosine trainer.epochs=3
  llmft train -m task=sentiment optimizer.lr=1e-5,3e-5,5e-5
  llmft train recipe=sentiment-minilm
  llmft eval run=outputs/train/<day>/<time>
  llmft generate run=outputs/train/<day>/<time> prompt="A lovely, funny film."
  llmft data task=sft model=tiny-gpt2 rows=5 output=report/                # what training will see, and its quality
  llmft serve run=outputs/train/<day>/<time> port=8000                       # OpenAI-compatible API
  llmft export run=outputs/train/<day>/<time> format=onnx quantize=int8
  llmft explain run=outputs/train/<day>/<time> prompt="A lovely and funny film."
  llmft prune run=outputs/train/<day>/<time> method=heads amount=0.3          # then fine-tune it to recover
  llmft train -m hydra/sweeper=llmft-optuna hydra.sweeper.n_trials=20      # Optuna search
  llmft train -m hydra/launcher=joblib optimizer.lr=1e-5,3e-5 seed=0,1       # parallel local jobs
  llmft sweep-report outputs/train-multirun/<day>/<time>
  torchrun --nproc-per-node 2 -m llmft train task=sentiment                 # data-parallel

`llmft VERB --help` shows that verb's full config. Errors print one line; set
HYDRA_FULL_ERROR=1 to see the traceback.
"""


SCHEDULE_NOTE = (
    "Schedules: warmup multiplies optimizer.lr by step/warmup (0-based optimizer steps; the first runs "
    "at 0 and step `warmup` at the full rate, as transformers' schedules), warmup = scheduler.warmup_steps "
    "or ceil(scheduler.warmup_ratio x steps); then linear, cosine, constant or exponential decay."
)


def _options(group_dir) -> list[str]:
    return sorted(p.stem for p in group_dir.glob("*.yaml")) if group_dir.is_dir() else []


def group_options() -> dict[str, list[str]]:
    """Each config group (and `recipe`) with its options, read from the shipped folders."""
    from llmft.paths import conf_dir, recipes_dir

    return {**{g: _options(conf_dir() / g) for g in GROUPS}, "recipe": _options(recipes_dir())}


def top_level_help() -> str:
    width = max(map(len, VERBS)) + 2  # a space after the longest verb (sweep-report)
    verbs = "\n".join(f"  {name:<{width}}{text}" for name, text in VERBS.items())
    groups = [f"  {g:<11}{', '.join(options)}" for g, options in group_options().items()]
    return USAGE.format(verbs=verbs, groups="\n".join(groups), schedule=SCHEDULE_NOTE)


def verb_help(verb: str, overrides: list[str]) -> str:
    """`llmft VERB --help`: the groups and the composed config (with any overrides given). Hydra's own help builds a
    config repository per group and took ~2 s here; composing once takes a fraction of that."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from llmft.paths import conf_dir

    _register_all()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(verb, overrides=overrides)
    groups = [f"{g}: {', '.join(options)}" for g, options in sorted(group_options().items())]
    return (
        f"llmft {verb} ({VERBS[verb]})\n\n== Configuration groups ==\nCompose your configuration from those groups "
        f"(group=option)\n\n"
        + "\n".join(groups)
        + "\n\n== Config ==\nOverride anything in the config (foo.bar=value)\n\n"
        + OmegaConf.to_yaml(cfg)
        + (f"\n{SCHEDULE_NOTE}\n" if "scheduler" in cfg else "")
        + "\nUse --hydra-help for Hydra's own options (-m, -cd, hydra/launcher=..., hydra/sweeper=...)."
    )


def register_recipes() -> None:
    """Each recipes/*.yaml becomes option `recipe=<stem>`, merged at the top level of the config."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from llmft.paths import recipes_dir

    cs = ConfigStore.instance()
    for path in sorted(recipes_dir().glob("*.yaml")):
        cs.store(group="recipe", name=path.stem, node=OmegaConf.load(path), package="_global_")


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (Hydra stays at the edge): each primary YAML names `<verb>_schema`
    first, each task YAML its family's options as `/task_schema@_here_: <family>`."""
    from hydra.core.config_store import ConfigStore

    from llmft.schemas import schemas
    from llmft.tasks import FAMILIES

    cs = ConfigStore.instance()
    for verb, schema in schemas().items():
        cs.store(name=f"{verb}_schema", node=schema)
    for name, entry in FAMILIES.items():
        cs.store(group="task_schema", name=name, node=entry.options)


def _register_all() -> None:
    """The schemas, the recipes and the resolvers every composition needs."""
    register_configs()
    register_recipes()
    _register_resolvers()


def _register_resolvers() -> None:
    """`${llmft_direction:${task.select_mode},${task.select_metric}}`: an Optuna direction from the selection metric's
    mode (when unset, from the metric itself: minimize a loss or perplexity)."""
    from omegaconf import OmegaConf

    def direction(mode: Any, metric: Any = "accuracy") -> str:
        from llmft.config import metric_mode

        mode = getattr(mode, "value", mode) or metric_mode(str(metric)).value
        return "maximize" if mode == "max" else "minimize"

    OmegaConf.register_new_resolver("llmft_direction", direction, replace=True)


def _command(verb: str) -> Callable:
    if verb == "train":
        from llmft.commands.train import train_command as fn
    elif verb == "eval":
        from llmft.commands.eval import eval_command as fn
    elif verb == "serve":
        from llmft.commands.serve import serve_command as fn
    elif verb == "export":
        from llmft.commands.export import export_command as fn
    elif verb == "data":
        from llmft.commands.data import data_command as fn
    elif verb == "explain":
        from llmft.commands.explain import explain_command as fn
    elif verb == "prune":
        from llmft.commands.prune import prune_command as fn
    else:
        from llmft.commands.generate import generate_command as fn
    return _guarded(fn)


def _guarded(fn: Callable) -> Callable:
    """A user mistake inside a single run exits 2 with its one line; in a sweep the job fails and the rest go on."""

    @functools.wraps(fn)
    def wrapper(cfg: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from llmft.errors import ConfigError, UserError

        import logging

        run_log = logging.getLogger("llmft")  # the run folder's <verb>.log; the console has the message already
        try:
            return fn(cfg)
        except (UserError, ConfigError) as ex:
            run_log.error(f"error: {ex}", extra={"console": False})
            if os.environ.get(_USER_FULL_ERROR) == "1" or HydraConfig.get().mode == RunMode.MULTIRUN:
                raise
            print(f"error: {ex}", file=sys.stderr)
            sys.exit(2)
        except Exception:
            run_log.exception("the run failed", extra={"console": False})  # the traceback reaches stderr as it is
            raise

    return wrapper


def _refuse_a_held_run_dir(args: list[str]) -> None:
    """`hydra.run.dir=<a folder another llmft process holds>`: refuse before Hydra writes its `.hydra/` files there
    (they would replace the holder's saved config)."""
    from pathlib import Path

    from llmft.runs.run_folder import RunFolder

    for arg in args:
        if arg.startswith("hydra.run.dir="):
            folder = Path(arg.split("=", 1)[1])
            if RunFolder(folder).lock_file.is_file():
                RunFolder(folder).lock().unlock()  # a one-line error naming the holder when it is held


def run_verb(verb: str, args: list[str]) -> None:
    """Run one verb through hydra.main with the given overrides and Hydra flags."""
    import hydra

    from llmft.paths import conf_dir

    _register_all()
    fn = _command(verb)
    rank = int(os.environ.get("RANK", 0))
    if verb == "train" and rank == 0:
        _refuse_a_held_run_dir(args)
    if rank > 0 and "-m" not in args and "--multirun" not in args:  # torchrun: rank 0 owns the run folder
        import tempfile

        args = [*args, "hydra.output_subdir=null", f"hydra.run.dir={tempfile.mkdtemp(prefix=f'llmft-rank{rank}-')}"]
    sys.argv = [f"llmft {verb}", *args]
    hydra.main(config_path=str(conf_dir()), config_name=verb, version_base="1.3")(fn)()


def _sweep_report(args: list[str]) -> None:
    from pathlib import Path

    from llmft.errors import UserError

    if len(args) != 1 or args[0].startswith("-"):
        print("usage: llmft sweep-report <multirun folder>", file=sys.stderr)
        sys.exit(2)
    from llmft.commands.sweep import write_summary

    try:
        write_summary(Path(args[0]))
    except UserError as ex:
        print(f"error: {ex}", file=sys.stderr)
        sys.exit(2)


def _hydra_message(ex: BaseException) -> str | None:
    """One line for what fails inside Hydra before a verb runs: an output folder it cannot create, a target in the
    config that it refuses to instantiate (e.g. a `hydra.callbacks` entry of a -cd config folder)."""
    import traceback

    from hydra.errors import InstantiationException

    if isinstance(ex, InstantiationException):
        lines = [line.strip() for line in str(ex).splitlines() if line.strip() and not line.strip().startswith("full_key:")]
        key = next((line.split(":", 1)[1].strip() for line in str(ex).splitlines() if line.strip().startswith("full_key:")), None)
        return f"Hydra refused {key or 'a config target'}: {' '.join(lines)}"
    if isinstance(ex, OSError) and ex.filename is not None:
        frames = [f for f in traceback.extract_tb(ex.__traceback__) if not f.filename.endswith(("pathlib.py", "os.py"))]
        if frames and f"{os.sep}hydra{os.sep}" in frames[-1].filename:  # Hydra makes the folder and writes .hydra/ in it
            what = "create the output folder" if "mkdir" in (frames[-1].line or "") else "write in the output folder:"
            return (
                f"cannot {what} {ex.filename}: {ex.strerror}; "
                "choose another with hydra.run.dir=<folder> (hydra.sweep.dir=<folder> with -m)"
            )
    return None


def _print_help(text: str) -> None:
    """Print help; a reader that closes the pipe early (`llmft --help | head`) ends it quietly, as Unix tools do."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        _print_help(top_level_help())
        return
    verb, args = argv[0], argv[1:]
    args = ["trainer.dry_run=true" if a == "--dry-run" else a for a in args]
    if verb not in VERBS:
        from llmft.errors import closest

        hint = closest(verb, VERBS)
        print(f"error: unknown verb '{verb}'{hint}. Verbs: {', '.join(VERBS)}", file=sys.stderr)
        sys.exit(2)
    if verb == "sweep-report":
        _sweep_report(args)
        return
    overrides = [a for a in args if a not in ("-h", "--help")]
    help_only = len(overrides) < len(args) and all("=" in a for a in overrides)  # with Hydra flags (-cd, -m): Hydra's help
    show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ[_USER_FULL_ERROR] = "1" if show_traceback else "0"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's printer
    previous = _stop_on_signals()
    try:
        if help_only:
            _print_help(verb_help(verb, overrides))
            return
        run_verb(verb, args)
    except KeyboardInterrupt as ex:  # a signal where no phase stops on its own: what it kept, in one line
        signum = getattr(ex, "signum", signal.SIGINT)
        detail = getattr(ex, "detail", "")
        print(f"error: stopped by {signal.Signals(signum).name}{'; ' + detail if detail else ''}", file=sys.stderr)
        sys.exit(128 + signum)
    except Exception as ex:  # noqa: BLE001 - the one place that turns errors into messages
        from llmft.cli_errors import describe

        message = describe(ex) or _hydra_message(ex)
        if message is None or show_traceback:
            raise
        print(f"error: {message}", file=sys.stderr)
        print("(set HYDRA_FULL_ERROR=1 for the full traceback)", file=sys.stderr)
        sys.exit(2)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_on_signals() -> dict[int, Any]:
    """SIGINT and SIGTERM raise `Stopped` wherever no phase handles them itself (the training loop and the final
    scoring do): `finally` blocks and cleanups run, and `main` prints one line. Returns the handlers it replaced."""
    import threading

    from llmft.errors import Stopped

    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, frame: Any) -> None:
        raise Stopped(signum)

    return {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}


if __name__ == "__main__":
    main()
