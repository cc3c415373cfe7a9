"""Shared fixtures: the real CLI (in this process, or as a subprocess where the process is tested), offline, in a
temp folder; tiny data sets."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import signal
import subprocess
import sys
import traceback
import warnings
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Small, fast settings for the tiny random BERT; tests add what they check.
TINY = [
    "model=tiny-bert",
    "task.data.max_train_samples=2048",
    "task.data.max_eval_samples=128",
    "trainer.epochs=2",
    "trainer.batch_size=16",
    "model.dropout=0.0",
    "trainer.progress=false",
    "optimizer.lr=1e-3",
]
FAST = [*TINY[:3], "trainer.epochs=1", "trainer.max_steps=3", "trainer.progress=false"]  # runs, learns nothing


def run_cli(
    args: list[str], cwd: Path, check: bool = True, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """`python -m llmft ARGS` in `cwd`; fails the test with the output when `check` and the exit code is not 0."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "llmft", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"llmft {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
        )
    return proc


def cli(args: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """`llmft ARGS` in `cwd`, run in this process through `llmft.cli.main` (what `python -m llmft` calls), so a call
    does not pay ~4 s of interpreter start and torch/transformers/datasets imports. Exit status, stdout and stderr
    are what the process would give: SystemExit's code, an uncaught exception's traceback with status 1, and warnings
    printed to stderr. Use `run_cli` where the process itself is under test (signals, kill, torchrun, launchers)."""
    from llmft.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _as_a_fresh_process(cwd, env, out, err):
        try:
            main(list(args))
            code = 0
        except SystemExit as ex:  # sys.exit(2) -> 2, sys.exit() -> 0, sys.exit("text") -> text on stderr and 1
            code = 0 if ex.code is None else ex.code if isinstance(ex.code, int) else 1
            if not isinstance(ex.code, (int, type(None))):
                print(ex.code, file=sys.stderr)
        except Exception:  # noqa: BLE001 - what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
    proc = subprocess.CompletedProcess(["llmft", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        pytest.fail(f"llmft {' '.join(args)} exited {code}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


_CALL_STREAMS: list[tuple[io.StringIO, str]] = []  # each cli() call's stdout/stderr buffer and which it was


@contextlib.contextmanager
def _as_a_fresh_process(cwd: Path, env: dict | None, out: io.StringIO, err: io.StringIO) -> Iterator[None]:
    """Run a CLI call with its own cwd, environment, argv, stdout/stderr, warning filters and logging, and put
    back everything it changes (Hydra sets HYDRA_FULL_ERROR, sys.argv and the root logger's handlers)."""
    from hydra.core.global_hydra import GlobalHydra

    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv[:], os.getcwd()
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_logging = [(lg, lg.level, lg.handlers[:], lg.propagate, lg.disabled) for lg in _loggers()]
    real = {"out": sys.stdout, "err": sys.stderr}
    _CALL_STREAMS.extend([(out, "out"), (err, "err")])
    os.environ.pop("HYDRA_FULL_ERROR", None)
    os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})})
    GlobalHydra.instance().clear()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            _point_stream_handlers({id(real["out"]): out, id(real["err"]): err, **_call_streams(out, err)})
            _default_warning_filters()
            yield
    finally:
        _point_stream_handlers(_call_streams(real["out"], real["err"]))  # handlers made in the call: the real streams
        for lg, level, handlers, propagate, disabled in saved_logging:
            for h in lg.handlers:
                if h not in handlers:  # the run's own (Hydra's console and <job>.log file handlers)
                    h.close()
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate, lg.disabled = propagate, disabled
        for s, handler in saved_signals.items():
            signal.signal(s, handler)
        GlobalHydra.instance().clear()
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)


def _loggers() -> list[logging.Logger]:
    return [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger))]


def _call_streams(out: object, err: object) -> dict[int, object]:
    """Each earlier call's buffer id -> the stream that should replace it."""
    return {id(buffer): out if kind == "out" else err for buffer, kind in _CALL_STREAMS}


def _point_stream_handlers(replace: dict[int, object]) -> None:
    """Log handlers bound to the process's streams (transformers' own) or to an earlier call's buffers write where
    `replace` says, as they would to a fresh process's stdout/stderr."""
    for lg in _loggers():
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and id(h.stream) in replace:
                h.setStream(replace[id(h.stream)])


def _default_warning_filters() -> None:
    """The warning filters and printer of a plain `python` process (pytest records warnings instead)."""
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
        warnings.formatwarning(message, category, filename, lineno, line)
    )


def only_run_dir(root: Path) -> Path:
    runs = [p.parent for p in root.glob("**/run.json")]
    assert len(runs) == 1, runs
    return runs[0]


class RecordingSink:
    """A stand-in experiment tracker for MetricsLog(None, sink): keeps every record it is fed, for tests to read back."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def log(self, record: dict) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


def generation_eval(task: str, rows: int) -> list[str]:
    """`task.eval_generate_samples=<rows>` when conf/task/<task>.yaml is of a generative family (the option exists
    only in their schema), else nothing."""
    import yaml

    family = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "task" / f"{task}.yaml").read_text())["family"]
    return [f"task.eval_generate_samples={rows}"] if family in ("causal_lm", "seq2seq") else []


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module", autouse=True)
def _long_lived_objects_frozen() -> None:
    """Each module starts with what is alive moved out of the cyclic collector's sight (`gc.freeze`): the imported
    torch/transformers/datasets objects, ~660k of them, made every `gc.collect()` a run makes (three per training run)
    cost ~0.3 s in this process, more than half of a 3-step run. Garbage is collected first, so nothing leaks that
    the collector would have freed; objects created afterwards are collected as before."""
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One finished tiny training run, shared by the tests that inspect a run folder."""
    root = tmp_path_factory.mktemp("tiny_run")
    cli(["train", *TINY, "trainer.eval_every=32", "trainer.log_every=16"], cwd=root)
    return only_run_dir(root / "outputs")


# Seconds-long tests that run in the slow suite (CI runs both) to keep the default suite under 10 minutes on 2 cores;
# each has a faster sibling in the default suite that covers the same path.
SLOW_FOR_TIME = {
    # moved when streaming, pruning, ONNX families and KTO metrics joined the default suite (it stays under 10 minutes)
    "tests/test_prune.py::test_heads_of_a_decoder_are_refused_naming_the_alternatives",
    "tests/test_prune.py::test_a_head_pruned_model_fine_tunes_to_recover_and_keeps_its_heads_removed",
    "tests/test_kto_reward.py::test_kto_trains_and_the_run_generates_as_a_causal_lm",
    "tests/test_generate_template.py::test_bare_prompt_on_a_two_field_template_names_input_and_the_fields",
    "tests/test_resume.py::test_resume_refuses_changed_config_and_finished_runs",
    "tests/test_data_verb.py::test_on_a_terminal_supervised_tokens_are_highlighted",
    "tests/test_generative.py::test_family_trains_scores_and_generates[translation-tiny-t5-bleu]",
    "tests/test_explain.py::test_ner_explains_each_predicted_entity_or_a_named_word",
    "tests/test_resume.py::test_kill_9_then_resume_matches_an_unbroken_run",
    "tests/test_resume.py::test_sigint_saves_says_how_to_resume_and_auto_resumes",
    "tests/test_resume.py::test_kill_during_a_save_keeps_the_previous_checkpoint",
    "tests/test_distributed.py::test_sharded_evaluation_gives_single_process_metrics",
    "tests/test_distributed.py::test_two_processes_match_one_with_the_same_global_batch[ddp-1]",
    "tests/test_distributed.py::test_two_processes_match_one_with_the_same_global_batch[fsdp-1]",
    "tests/test_audit_faults.py::test_kill_9_of_the_holder_does_not_block_a_resume",
    "tests/test_audit_faults.py::test_resume_auto_repairs_a_torn_log_line_and_a_swap_killed_between_its_renames",
    "tests/test_faults_19.py::test_a_stop_during_the_final_test_scoring_says_how_to_finish_and_the_resume_finishes",
    "tests/test_cross_validation.py::test_fold_sweep_ranks_configurations_by_their_fold_mean",
    "tests/test_quiet_tokenizer.py::test_multiple_choice_rows_with_many_tokens_per_character_train_quietly",
    "tests/test_sweeps.py::test_optuna_sweep_ranks_its_trials",
    "tests/test_generative.py::test_sft_learns_held_out_instructions",
    "tests/test_audit_loop.py::test_a_bf16_checkpoint_trains_on_fp32_weights",
    "tests/test_group_default.py::test_a_grouped_run_stopped_mid_epoch_resumes_to_the_unbroken_run",
    "tests/test_integrations.py::test_mlflow_records_metrics_and_params",
    # 2026-12-05: the suite grew to 849 tests (12.7 min); these 5-12 s ones moved (each path keeps a default-suite test)
    "tests/test_distributed.py::test_two_processes_match_one_with_the_same_global_batch[fsdp-2]",
    "tests/test_audit_loop.py::test_loss_selection_max_steps_logged_rate_and_throughput_through_the_cli",
    "tests/test_robustness.py::test_fgm_and_pgd_train_on_perturbed_embeddings_and_change_the_run",
    "tests/test_audit_faults.py::test_a_damaged_run_file_is_one_line_naming_it[resume-trainer-state]",
    "tests/test_audit_faults.py::test_a_damaged_run_file_is_one_line_naming_it[resume-pickled-code]",
    "tests/test_audit_faults.py::test_a_second_train_on_a_held_run_folder_exits_2_naming_the_holder",
    "tests/test_lora_variants.py::test_dora_and_rslora_train_and_change_the_updates",
    "tests/test_audit_inputs.py::test_every_task_defaults_to_a_model_that_fits_it",
    "tests/test_generative.py::test_family_trains_scores_and_generates[textgen-tiny-gpt2-perplexity]",
    "tests/test_generative.py::test_family_trains_scores_and_generates[summarization-tiny-t5-rougeL]",
    "tests/test_train_cli.py::test_sweep_writes_each_job_and_a_ranked_summary",
    "tests/test_token_loss.py::test_sft_trains_the_same_with_and_without_chunking",
    "tests/test_preference_trl.py::test_a_batch_of_8_equals_1_x_8_accumulated",
    "tests/test_lora_variants.py::test_neftune_noises_training_embeddings_only",
    "tests/test_distill.py::test_alpha_1_at_temperature_1_is_plain_fine_tuning",
    "tests/test_memory_plan.py::test_a_batch_over_budget_runs_as_micro_batches_with_the_same_losses",
    "tests/test_data_sources.py::test_mix_by_weight_is_seeded_and_follows_the_weights",
    "tests/test_watch.py::test_off_a_terminal_progress_is_a_plain_line_per_log_interval",
    "tests/test_watch.py::test_absl_info_lines_are_not_shown",
    "tests/test_serve_onnx.py::test_missing_or_unverified_export_is_refused",
    "tests/test_robustness.py::test_dp_sgd_run_spends_at_most_its_epsilon_and_saves_it",
    "tests/test_robustness.py::test_adversarial_and_privacy_refuse_what_they_cannot_do",
    "tests/test_serve_reward.py::test_classify_answers_the_reward_generate_prints",
    "tests/test_export.py::test_onnx_classifier_matches_pytorch_on_other_shapes_and_int8_agrees",
    "tests/test_serve_embeddings.py::test_embeddings_equal_llmft_generate_and_batch",
    "tests/test_packing.py::test_packing_trains_from_the_cli_and_is_refused_where_it_cannot_hold",
    "tests/test_audit_promises.py::test_trust_remote_code_stays_off_in_every_model_option",
    "tests/test_cross_validation.py::test_cv_folds_train_a_run_per_fold_and_summarise",
    "tests/test_watch.py::test_train_log_has_the_progress_lines_and_warnings",
    "tests/test_watch.py::test_load_report_is_one_line_naming_the_new_head",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in SLOW_FOR_TIME or item.nodeid.split("[")[0] in SLOW_FOR_TIME:
            item.add_marker(pytest.mark.slow)
