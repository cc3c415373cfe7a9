"""The rows a verb scores for a split (`llmft eval`, ensembles, export's check): on the run's own data, exactly the
rows the run held out; on other data, the named split or the whole file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmft.config import DataConfig
from llmft.data import loading as data
from llmft.data import mixing, splits, streaming
from llmft.errors import UserError


def role(split: str, data: DataConfig) -> str:
    """The role (train/eval/test) of a split named on the command line, by its role name or the data's split names."""
    roles = {"train": "train", "eval": "eval", "test": "test"}
    roles.update({data.train_split: "train", data.eval_split: "eval", data.test_split: "test"})
    if split not in roles:
        raise UserError(f"unknown split '{split}'; choose one of: {', '.join(sorted(roles))}")
    return roles[split]


def scored_rows(run_dir: Path, cfg: DataConfig, trained_on: DataConfig, role: str) -> tuple[Any, str]:
    """The rows to score for `role` and where they come from. On the run's own data, a split carved off train is the
    very rows the run held out (splits.json), and `train` is what is left of train after the carve; other data is
    scored as it is: a named split, or every row of a single file given to eval."""
    if cfg.streaming and role != "train":  # the split files, or the head rows the stream held out
        return streaming.open_stream(cfg)[0][role], f"the {role} rows held out of the stream {cfg.path}"
    if cfg.sources:  # each source re-carves its own splits (seeded), then they are joined as in training
        return mixing.load_splits(cfg, lambda train: None)[0][role], f"the {role} rows of {len(cfg.sources)} task.data.sources"
    split_name = {"train": cfg.train_split, "eval": cfg.eval_split, "test": cfg.test_split}[role]
    own = splits.source(cfg) == splits.source(trained_on)
    if not own and not cfg.data_files and Path(cfg.path).expanduser().is_file():
        cfg.data_files = {split_name: cfg.path}  # another single file given to eval: score all of it
        return data.cap(data.load_raw(cfg)[split_name], role, cfg), f"every row of {cfg.path}"
    raw = data.load_raw(cfg)
    carved = splits.saved_split(run_dir, raw, cfg, role) if own else None
    train_file = Path((data.local_files(cfg) or {}).get(cfg.train_split, cfg.path)).name
    if carved is not None:
        return data.cap(carved, role, cfg), f"carved from {train_file} and held out when the run was trained"
    if split_name in raw and (role != "train" or not own):
        return data.cap(raw[split_name], role, cfg), f"split '{split_name}' of {cfg.path}"
    dataset = data.named_splits(raw, cfg)[role]
    if data.ROW_COLUMN not in dataset.column_names:  # nothing was carved
        return dataset, f"split '{split_name}' of {cfg.path}"
    return dataset, (
        f"split '{split_name}' of {cfg.path} less the rows carved off it"
        if role == "train"
        else f"carved from {train_file} with task.data.split_seed={cfg.split_seed}"
    )
