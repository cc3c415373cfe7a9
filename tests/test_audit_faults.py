"""Issue 9, faults: one process per run folder (a kill -9 frees it), resume repairs what a kill -9 tears, damaged run
files are one line each, run files follow the umask, and the first Ctrl-C says what a second one does."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import run_cli

# 16 steps of a tiny model, an eval (and so a best checkpoint) after every step, checkpoints/last only when stopped
RUN = [
    "model=tiny-bert",
    "task.data.max_train_samples=256",
    "task.data.max_eval_samples=32",
    "trainer.batch_size=16",
    "trainer.epochs=1",
    "trainer.log_every=1",
    "trainer.eval_every=1",
    "trainer.save_every=0",
    "trainer.limit_eval_batches=2",
    "trainer.progress=false",
    "optimizer.lr=1e-3",
]

# Holds the run right after it logs step LLMFT_TEST_HOLD_AT, while the file LLMFT_TEST_HOLD exists: the test decides
# when the run goes on, so no timing can race.
HOLD = """
import os, time
import llmft.reporting.console as report
_write = report.MetricsLog.write
def _write_then_hold(self, record):
    _write(self, record)
    if "train/loss" in record and record["step"] >= int(os.environ["LLMFT_TEST_HOLD_AT"]):
        while os.path.exists(os.environ["LLMFT_TEST_HOLD"]):
            time.sleep(0.05)
report.MetricsLog.write = _write_then_hold
"""


def _start(args: list[str], cwd: Path, hold: Path, at: int, umask: int = 0o022) -> subprocess.Popen:
    hold.touch()
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", LLMFT_TEST_HOLD=str(hold), LLMFT_TEST_HOLD_AT=str(at))
    code = f"import sys\n{HOLD}\nfrom llmft.cli import main\nmain(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.umask(umask),
    )


def _wait_for_step(logs: str, cwd: Path, step: int, proc: subprocess.Popen, timeout: float = 180) -> Path:
    """The run folder once a metrics.jsonl matching `logs` (a glob under `cwd`) has logged `step`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for log in cwd.glob(logs):
            if any(json.loads(x)["step"] >= step for x in log.read_text().splitlines() if x.strip().endswith("}")):
                return log.parent
        if proc.poll() is not None:
            pytest.fail(f"run ended before step {step}: {proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"no step {step} within {timeout}s")


def _steps(run: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if "train/loss" in x]


def _copy(run: Path, to: Path) -> Path:
    """A copy of the held run to damage; unfinished even where a second writer finished it (the bug of item 11)."""
    shutil.copytree(run, to)
    (to / "eval.json").unlink(missing_ok=True)
    return to


def _stopped_at(run: Path) -> int:
    return json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"]


def _one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(n in errors[0] for n in needles), proc.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def held_run(tmp_path_factory) -> SimpleNamespace:
    """A run (umask 022) held after step 2; meanwhile a second train into its folder; then Ctrl-C stops it."""
    cwd = tmp_path_factory.mktemp("held")
    hold = cwd / "hold"
    first = _start(["train", *RUN], cwd, hold, at=2)
    run = _wait_for_step("outputs/train/*/*/metrics.jsonl", cwd, 2, first)
    saved_config = {p.name: p.stat().st_mtime_ns for p in (run / ".hydra").iterdir()}
    second = run_cli(["train", *RUN, f"hydra.run.dir={run}"], cwd=cwd, check=False)
    saved_config_after = {p.name: p.stat().st_mtime_ns for p in (run / ".hydra").iterdir()}
    first.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the handler runs while the step is held
    hold.unlink()
    _, err = first.communicate(timeout=180)
    return SimpleNamespace(
        run=run, first=first, first_err=err, second=second, config_untouched=saved_config == saved_config_after
    )


def test_a_second_train_on_a_held_run_folder_exits_2_naming_the_holder(held_run):
    line = _one_error_line(held_run.second, f"pid {held_run.first.pid}", "in use by another llmft process")
    assert str(held_run.run) in line
    assert held_run.config_untouched  # refused before Hydra wrote its .hydra/ files over the holder's saved config
    steps = _steps(held_run.run)
    assert steps == list(range(1, len(steps) + 1)) and steps[-1] == _stopped_at(held_run.run)  # one writer, one log
    assert not (held_run.run / "eval.json").exists()


def test_first_ctrl_c_says_a_second_one_stops_without_saving(held_run):
    assert held_run.first.returncode == 128 + signal.SIGINT, held_run.first_err[-3000:]
    assert "press Ctrl-C again to stop at once without saving" in held_run.first_err
    assert _stopped_at(held_run.run) >= 2


def test_run_files_follow_the_umask(held_run):
    modes = {p.relative_to(held_run.run): p.stat().st_mode & 0o777 for p in [held_run.run, *held_run.run.rglob("*")]}
    assert Path("checkpoints/last/model.safetensors") in modes and Path("checkpoints/best/model.safetensors") in modes
    wrong = {str(p): oct(m) for p, m in modes.items() if m != (0o755 if (held_run.run / p).is_dir() else 0o644)}
    assert not wrong


def test_checkpoint_modes_come_from_the_umask_not_a_fixed_mode(tmp_path):
    from safetensors.torch import save_file
    import torch

    from llmft.runs.checkpoint import atomic_write_dir

    previous = os.umask(0o027)
    try:
        atomic_write_dir(tmp_path / "last", lambda d: save_file({"w": torch.zeros(2)}, str(d / "model.safetensors")))
    finally:
        os.umask(previous)
    assert (tmp_path / "last").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "last" / "model.safetensors").stat().st_mode & 0o777 == 0o640


def test_kill_9_of_the_holder_does_not_block_a_resume(held_run, tmp_path):
    run = _copy(held_run.run, tmp_path / "run")
    stopped = _stopped_at(run)
    holder = _start(["train", f"trainer.resume={run}", "trainer.progress=false"], tmp_path, tmp_path / "hold", at=stopped + 1)
    _wait_for_step("run/metrics.jsonl", tmp_path, stopped + 1, holder)
    second = run_cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=tmp_path, check=False)
    _one_error_line(second, f"pid {holder.pid}")
    holder.kill()  # SIGKILL while holding the folder: the kernel drops the lock
    holder.wait()
    run_cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=tmp_path)
    assert _steps(run) == list(range(1, 17)) and (run / "eval.json").is_file()


class _Killed(BaseException):
    """Stands for a kill -9: nothing after it runs."""


def test_resume_auto_repairs_a_torn_log_line_and_a_swap_killed_between_its_renames(held_run, tmp_path, monkeypatch):
    from llmft.runs import checkpoint

    run = _copy(held_run.run, tmp_path / "outputs" / "train" / "day" / "time")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "epoch": 0, "train/lo')  # the last line, torn by the kill
    last, real_replace = run / "checkpoints" / "last", os.replace

    def replace_then_die(src, dst):
        real_replace(src, dst)
        raise _Killed  # after `last` moved aside, before the new folder moved in

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(_Killed):
        checkpoint.atomic_write_dir(last, lambda tmp: shutil.copytree(last, tmp, dirs_exist_ok=True))
    monkeypatch.setattr(os, "replace", real_replace)
    assert not last.exists() and (last.parent / ".last.old").is_dir() and list(last.parent.glob(".last.tmp-*"))

    proc = run_cli(["train", "trainer.resume=auto", "trainer.progress=false"], cwd=tmp_path)
    assert "dropped the torn last line" in proc.stderr and "checkpoints/last was missing" in proc.stderr
    assert _steps(run) == list(range(1, 17)) and (run / "eval.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best", "last"]


def test_a_swap_killed_before_its_new_folder_was_complete_falls_back_to_the_old_one(tmp_path):
    from llmft.runs.checkpoint import recover_swap

    (tmp_path / ".last.old").mkdir()
    (tmp_path / ".last.old" / "weights").write_text("old, whole")
    (tmp_path / ".last.tmp-x").mkdir()
    (tmp_path / ".last.tmp-x" / "weights").write_text("new, partial")  # no completion marker
    assert recover_swap(tmp_path / "last") == tmp_path / ".last.old"
    assert (tmp_path / "last" / "weights").read_text() == "old, whole"


class _Code:
    def __reduce__(self):
        return (os.system, ("true",))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


DAMAGED = {
    "eval-best-weights": (["eval"], "checkpoints/best/model.safetensors", _truncate, "is damaged"),
    "generate-best-weights": (["generate", "prompt=a fine film"], "checkpoints/best/model.safetensors", _truncate, "is damaged"),
    "eval-best-config": (["eval"], "checkpoints/best/config.json", lambda p: p.write_text('{"bad'), "not a valid JSON"),
    "resume-last-weights": (["train"], "checkpoints/last/model.safetensors", _truncate, "is damaged"),
    "resume-best-weights": (["train"], "checkpoints/best/model.safetensors", _truncate, "is damaged"),
    "resume-trainer-state": (["train"], "checkpoints/last/trainer_state.pt", _truncate, "is damaged"),
    "resume-run-json": (["train"], "run.json", lambda p: p.write_text("{garbage"), "is damaged"),
    "resume-pickled-code": (
        ["train"],
        "checkpoints/last/trainer_state.pt",
        lambda p: p.write_bytes(pickle.dumps({"loop": _Code()})),
        "holds pickled code",
    ),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_run_file_is_one_line_naming_it(case, held_run, tmp_path):
    verb, name, damage, message = DAMAGED[case]
    run = _copy(held_run.run, tmp_path / "run")
    damage(run / name)
    target = [f"trainer.resume={run}", "trainer.progress=false"] if verb[0] == "train" else [f"run={run}"]
    proc = run_cli([verb[0], *target, *verb[1:]], cwd=tmp_path, check=False)
    line = _one_error_line(proc, str(run / name), message)
    assert "restore it from a copy" in line or "start a new run" in line


def test_resume_auto_passes_over_a_run_another_process_holds(tmp_path):
    from llmft.runs.resume import find_run
    from llmft.runs.run_folder import RunFolder

    runs = []
    for name in ("10-00-00", "11-00-00"):  # the second is the newer
        run = tmp_path / "2026-01-01" / name
        (run / "checkpoints" / "last").mkdir(parents=True)
        (run / "checkpoints" / "last" / "trainer_state.pt").write_bytes(b"x")
        runs.append(run)
        time.sleep(0.01)
    os.utime(runs[1], None)
    assert find_run("auto", tmp_path) == runs[1]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom llmft.runs.run_folder import RunFolder\n"
            "RunFolder(sys.argv[1]).lock(); print('held', flush=True); time.sleep(60)",
            str(runs[1]),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert RunFolder(runs[1]).held()
        assert find_run("auto", tmp_path) == runs[0]  # the newest run is in use: the one before it
    finally:
        holder.kill()
        holder.wait()
    assert not RunFolder(runs[1]).held()
