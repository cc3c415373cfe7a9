"""`llmft generate run=<folder>|model=<option> prompt="..." | input=<file.jsonl> [output=<file.jsonl>]`:
class probabilities for a classifier; generated text (streamed for one prompt) for a generative model."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llmft.commands.common import apply_user_overrides, quiet_libraries, to_typed
from llmft.commands.open_run import load_predictor
from llmft.config import GenerateConfig
from llmft.engine.precision import resolve_device
from llmft.errors import UserError
from llmft.tasks import ensemble
from llmft.tasks.base import PredictRequest


def check_output(path: Path) -> None:
    """`output=` must name a file that can be written; checked before any model is loaded."""
    if path.is_dir():
        raise UserError(f"output={path} is a folder; name a file, e.g. output={path / 'predictions.jsonl'}")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise UserError(f"cannot write output={path}: cannot create its folder {parent} ({ex.strerror})") from ex
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write output={path}: permission denied")
    existed = path.exists()
    try:  # open it as the write will (a path under /proc, a read-only file system fail here); its content is kept
        open(path, "a", encoding="utf-8").close()
    except OSError as ex:
        raise UserError(f"cannot write output={path}: {ex.strerror}") from ex
    if not existed:
        path.unlink(missing_ok=True)


def write_results(results: list[dict[str, Any]], out: Path) -> None:
    """Write the results to `out`; a write that fails (a full disk, /dev/full) keeps them in a file beside the current
    folder (or the temp folder) and says where, in one line: computed predictions are never lost."""
    import tempfile
    import time

    text = "".join(json.dumps(r) + "\n" for r in results)
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as ex:
        name = f"llmft-generate-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"
        for folder in (Path.cwd(), Path(tempfile.gettempdir())):
            try:
                (folder / name).write_text(text, encoding="utf-8")
            except OSError:
                continue
            raise UserError(
                f"cannot write output={out} ({ex.strerror}); the {_count(results)} are kept in {folder / name}"
            ) from ex
        print(text, end="")
        raise UserError(
            f"cannot write output={out} ({ex.strerror}) nor a copy in {Path.cwd()} or "
            f"{tempfile.gettempdir()}; the {_count(results)} were printed on stdout"
        ) from ex
    print(f"wrote {len(results)} results to {out}", file=sys.stderr)


def _count(results: list[Any]) -> str:
    return f"{len(results)} result{'' if len(results) == 1 else 's'}"


def generate_command(cfg: DictConfig) -> None:
    """Load the run's checkpoint (or a pretrained model) and print or write what its task predicts for the input."""
    config = to_typed(cfg, GenerateConfig)
    if config.output:
        check_output(Path(config.output))
    quiet_libraries()
    device = resolve_device(config.device)
    if isinstance(config.run, list):  # run=[a,b,c]: the members' probabilities (or scores) averaged
        task, results = _ensemble_predictions(config, device)
        stream = False
    else:
        task, model, _, _ = load_predictor(config)
        stream = config.prompt is not None and not config.output
        request = PredictRequest(
            config.prompt,
            Path(config.input) if config.input else None,
            config.batch_size,
            device,
            apply_user_overrides(task.cfg.generation, cfg, "generation"),
            stream,
        )
        results = task.predict(model.to(device), request)
    if config.output:
        write_results(results, Path(config.output))
    elif not (stream and task.streams):  # a streamed generation is on the terminal already
        for r in results:
            print(json.dumps(r))


def _ensemble_predictions(config: GenerateConfig, device: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Every member predicts the input; the family averages their rows (members share family and labels)."""
    import copy

    members = []
    for run in config.run:
        member = copy.deepcopy(config)
        member.run = run
        members.append(load_predictor(member))
    ensemble.check_ensembled(members[0][0])
    ensemble.check_members(list(config.run), [str(m[0].cfg.family) for m in members], [m[1] for m in members])
    rows = []
    for task, model, _, _ in members:
        request = PredictRequest(
            config.prompt, Path(config.input) if config.input else None, config.batch_size, device, task.cfg.generation, False
        )
        rows.append(task.member_predictions(model.to(device), request))
    return members[0][0], members[0][0].ensemble_predictions(rows)
