"""Issue 19, items 12-17: what a fault probe of the CLI and of `llmft serve` found, each as the user meets it. A saved
run config is data (no interpolation resolved at load; the server answers only its listed routes); a stop during the
final test scoring saves, says how to finish and resumes (LoRA too); a resume writes into its own run folder only;
one line (exit 2) for pickled code in a *.bin, non-finite optimizer settings, unresolvable interpolations, a custom-code
config, a failed checkpoint save and an output that cannot be written (computed predictions kept); refused instead of
silently wrong: a duplicated CSV column, a CoNLL tag without a type, an empty stop string; 400 for out-of-range
max_tokens and seed; a torn ONNX export named for what is wrong with it."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import cli, only_run_dir

NEEDS_SERVE = pytest.mark.skipif(  # tests of optional integrations skip when their extras are missing (README)
    importlib.util.find_spec("fastapi") is None, reason='llmft serve needs pip install "llmft[serve]"'
)

FAST = [
    "model=tiny-bert",
    "task.data.max_train_samples=64",
    "task.data.max_eval_samples=32",
    "trainer.epochs=1",
    "trainer.max_steps=3",
    "trainer.progress=false",
]  # conftest's FAST on less data: these tests need a run, not a model

SECRET = "s3cr3t-value-from-the-environment"


def _one_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The process exited 2 with one `error:` line holding `words` (library chatter before it aside), no traceback."""
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _run_with(prelude: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`llmft ARGS` in its own process (signals are under test), after `prelude` (a patch that injects the fault)."""
    code = f"import sys\n{prelude}\nfrom llmft.cli import main\nmain(sys.argv[1:])"
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished 3-step tiny classifier run."""
    root = tmp_path_factory.mktemp("faults19")
    cli(["train", *FAST], cwd=root)
    return only_run_dir(root / "outputs")


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("last", ".llmft.lock"))
    return to


# --- 12: a saved run config is data; the server answers only its routes -------------------------------------------
def test_a_run_is_written_with_its_interpolations_resolved(tmp_path):
    cli(
        ["train", *FAST, "trainer.max_steps=1", "run_name=${oc.env:LLMFT_TEST_NAME}"],
        tmp_path,
        env={"LLMFT_TEST_NAME": "from-the-env"},
    )
    run = only_run_dir(tmp_path / "outputs")
    saved = (run / ".hydra" / "config.yaml").read_text()
    assert "run_name: from-the-env" in saved and "${" not in saved
    cli(["eval", f"run={run}"], tmp_path)  # loads where the variable is unset: the value is in the run


@NEEDS_SERVE
def test_serve_refuses_a_saved_config_holding_an_interpolation_and_leaks_nothing(run, tmp_path):
    copy = _copy(run, tmp_path / "run")
    config = copy / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("\nrun_name: null\n", "\nrun_name: ${oc.env:LLMFT_SECRET}\n"))
    assert "\nrun_name: ${oc.env:LLMFT_SECRET}" in config.read_text()
    with socket.socket() as taken:  # were the run accepted, the server would stop at once: the port is taken
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = cli(
            ["serve", f"run={copy}", f"port={taken.getsockname()[1]}"], tmp_path, check=False, env={"LLMFT_SECRET": SECRET}
        )
    _one_line(proc, "in 'run_name'", "interpolation")
    assert SECRET not in proc.stderr + proc.stdout


def _stub_served(generates: bool = False) -> SimpleNamespace:
    from llmft.config import GenerationConfig

    return SimpleNamespace(
        name="stub",
        task=SimpleNamespace(pipeline_tag="text-generation"),
        generation=GenerationConfig(),
        max_batch_size=1,
        generates=generates,
        classifies=False,
        embeds=False,
        run_batch=lambda key, payloads: pytest.fail("no request should reach the model"),
    )


@NEEDS_SERVE
@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_serve_answers_only_the_routes_the_readme_lists(path):
    from fastapi.testclient import TestClient

    from llmft.serving.app import build_app

    with TestClient(build_app(_stub_served())) as client:
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


# --- 13 + 14: a stop during the final test scoring; a resume writes only its own run folder ---------------------------
SIGNAL_AT_TEST_SCORING = """
import os, signal
import llmft.engine.evaluation as evaluation
_scored = evaluation.gathered_metrics
def _signal_when_test_starts(task, model, batches, precision, role, dist):
    if role == "test":
        os.kill(os.getpid(), signal.{name})
    return _scored(task, model, batches, precision, role, dist)
evaluation.gathered_metrics = _signal_when_test_starts
"""


@pytest.mark.parametrize("signum, finetune", [(signal.SIGTERM, "finetune=lora"), (signal.SIGINT, "finetune=full")])
def test_a_stop_during_the_final_test_scoring_says_how_to_finish_and_the_resume_finishes(tmp_path, signum, finetune):
    proc = _run_with(SIGNAL_AT_TEST_SCORING.format(name=signal.Signals(signum).name), ["train", *FAST, finetune], tmp_path)
    assert proc.returncode == 128 + signum, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr[-3000:]
    run = only_run_dir(tmp_path / "outputs")
    assert "during the final test scoring" in proc.stderr and f"trainer.resume={run}" in proc.stderr
    assert not (run / "eval.json").exists() and (run / "checkpoints" / "last" / "trainer_state.pt").is_file()
    killed_log = (run / "train.log").read_text()

    cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=tmp_path)
    summary = json.loads((run / "eval.json").read_text())
    assert summary["steps"] == 3 and summary["metrics"]["samples"] > 0
    # 14: nothing but the run folder under outputs/, and its own log goes on
    assert [
        p for p in (tmp_path / "outputs").rglob("*") if p.is_dir() and run not in (p, *p.parents) and p not in run.parents
    ] == []
    log = (run / "train.log").read_text()
    assert log.startswith(killed_log) and len(log) > len(killed_log)


SIGNAL_AT_SETUP = """
import os, signal
import llmft.commands.setup as setup
_build = setup.build_run
def _signal_then_build(config, *args, **kwargs):
    os.kill(os.getpid(), signal.{name})
    return _build(config, *args, **kwargs)
setup.build_run = _signal_then_build
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_before_training_begins_is_one_line_and_leaves_nothing(tmp_path, signum):
    proc = _run_with(SIGNAL_AT_SETUP.format(name=signal.Signals(signum).name), ["train", *FAST], tmp_path)
    assert proc.returncode == 128 + signum, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr[-3000:]
    assert f"error: stopped by {signal.Signals(signum).name}; before training began; nothing was saved" in proc.stderr
    assert not list(tmp_path.glob("outputs/train/*/*"))


def test_resume_writes_its_log_into_the_run_folder_and_leaves_no_folder_of_its_own(tmp_path, monkeypatch):
    import llmft.engine.loop as loop

    def stop_after_step_2(state, window, hooks, requested, dist, cfg, epoch_end, num_steps):
        if state.step == 2:
            requested.append(signal.SIGTERM)
        return after_step(state, window, hooks, requested, dist, cfg, epoch_end, num_steps)

    after_step = loop._after_step
    monkeypatch.setattr(loop, "_after_step", stop_after_step_2)
    proc = cli(["train", *FAST, "trainer.log_every=1"], cwd=tmp_path, check=False)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    monkeypatch.setattr(loop, "_after_step", after_step)
    run = only_run_dir(tmp_path / "outputs")
    before = (run / "train.log").read_text()
    cli(["train", "trainer.resume=auto", "trainer.progress=false"], cwd=tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "outputs" / "train").glob("*/*")) == [run.relative_to(tmp_path)]
    after = (run / "train.log").read_text()
    assert after.startswith(before) and "step 3" in after[len(before) :], after[len(before) :]


# --- 15: one line instead of a traceback ---------------------------------------------------------------------------
class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_bin_holding_pickled_code_is_refused_in_one_line(run, tmp_path):
    copy = _copy(run, tmp_path / "run")
    best = copy / "checkpoints" / "best"
    (best / "model.safetensors").unlink()
    (best / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": _Payload()}))
    proc = cli(["eval", f"run={copy}"], tmp_path, check=False)
    _one_line(proc, "pytorch_model.bin", "pickled code", "system")
    assert not (tmp_path / "PWNED").exists()


def _as_adapter(best: Path, base: Path) -> None:
    """Make `best` an unmerged LoRA checkpoint (adapter_config.json) on the base model `base`."""
    from peft import LoraConfig

    LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"], base_model_name_or_path=str(base)).save_pretrained(
        best
    )


def test_an_adapter_bin_holding_pickled_code_is_refused_in_one_line(run, tmp_path):
    copy = _copy(run, tmp_path / "run")
    best = copy / "checkpoints" / "best"
    _as_adapter(best, run / "checkpoints" / "best")
    (best / "model.safetensors").unlink()
    (best / "adapter_model.bin").write_bytes(pickle.dumps({"weight": _Payload()}))
    proc = cli(["eval", f"run={copy}"], tmp_path, check=False)
    _one_line(proc, "adapter_model.bin", "pickled code")
    assert not (tmp_path / "PWNED").exists()


def test_a_lora_checkpoint_whose_config_names_custom_code_is_one_line(run, tmp_path):
    copy = _copy(run, tmp_path / "run")
    best = copy / "checkpoints" / "best"
    _as_adapter(best, run / "checkpoints" / "best")
    config = json.loads((best / "config.json").read_text())
    config.pop("model_type")
    config["auto_map"] = {"AutoConfig": "configuration_x.XConfig", "AutoModelForSequenceClassification": "modeling_x.XModel"}
    (best / "config.json").write_text(json.dumps(config))
    proc = cli(["eval", f"run={copy}"], tmp_path, check=False)
    _one_line(proc, "custom code")


@pytest.mark.parametrize(
    "override, key",
    [
        ("optimizer.lr=nan", "optimizer.lr"),
        ("optimizer.lr=inf", "optimizer.lr"),
        ("optimizer.weight_decay=nan", "optimizer.weight_decay"),
        ("trainer.max_grad_norm=nan", "trainer.max_grad_norm"),
    ],
)
def test_non_finite_optimizer_settings_fail_validation(tmp_path, override, key):
    _one_line(cli(["train", "model=tiny-bert", override, "--dry-run"], tmp_path, check=False), key, "finite")
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("run.json"))


@pytest.mark.parametrize(
    "override, key",
    [
        ("seed=${python:os.getcwd}", "'seed'"),
        ("seed=${seed}", "'seed'"),
        ("run_name=${oc.env:LLMFT_SURELY_UNSET}", "LLMFT_SURELY_UNSET"),
    ],
)
def test_an_interpolation_that_cannot_resolve_is_one_line(tmp_path, override, key):
    _one_line(cli(["train", "model=tiny-bert", override, "--dry-run"], tmp_path, check=False), "cannot resolve", key)


def test_a_failed_checkpoint_save_is_one_line_and_keeps_the_previous_one(tmp_path, monkeypatch):
    import torch

    saves, save = [], torch.save

    def second_save_fails(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 2048 vs 1024")
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", second_save_fails)
    proc = cli(["train", *FAST, "trainer.save_every=1"], tmp_path, check=False)
    _one_line(proc, "cannot save", "RuntimeError", "the previous checkpoint there is kept")
    run = only_run_dir(tmp_path / "outputs")
    assert json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"] == 1
    assert not list((run / "checkpoints").glob(".last.*"))


FILE_SIZE_LIMIT_AT_FIRST_SAVE = """
import resource
import llmft.runs.checkpoint as checkpoint
_write = checkpoint.atomic_write_dir
def _limited(target, write, keep_old_as=None):
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))  # ulimit -f 256
    return _write(target, write, keep_old_as)
checkpoint.atomic_write_dir = _limited
"""


@pytest.mark.slow  # a process of its own; the RuntimeError case above covers the same path in-process
def test_a_save_beyond_ulimit_f_is_one_line(tmp_path):
    _one_line(_run_with(FILE_SIZE_LIMIT_AT_FIRST_SAVE, ["train", *FAST], tmp_path), "cannot save", "File too large")


def test_generate_to_a_full_device_keeps_the_predictions_and_says_where(run, tmp_path):
    line = _one_line(
        cli(["generate", f"run={run}", "prompt=A fine film.", "output=/dev/full"], tmp_path, check=False),
        "output=/dev/full",
        "kept in",
    )
    kept = Path(line.rsplit("kept in ", 1)[1])
    assert json.loads(kept.read_text())["label"] in ("positive", "negative")


def test_generate_to_a_path_under_proc_is_refused_before_the_work(run, tmp_path, monkeypatch):
    import llmft.commands.generate as generate

    monkeypatch.setattr(generate, "load_predictor", lambda config: pytest.fail("the output is checked before the model loads"))
    _one_line(
        cli(["generate", f"run={run}", "prompt=A fine film.", "output=/proc/llmft-predictions.jsonl"], tmp_path, check=False),
        "cannot write output=/proc/llmft-predictions.jsonl",
    )


def test_export_to_a_symlink_of_an_earlier_export_is_refused_before_the_work(run, tmp_path, monkeypatch):
    import llmft.commands.export as export

    monkeypatch.setattr(export, "load_source", lambda *a: pytest.fail("the output is checked before the checkpoint loads"))
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "export.json").write_text('{"format": "onnx", "status": "verified", "passed": true}\n')
    (tmp_path / "link").symlink_to(earlier)
    _one_line(
        cli(["export", f"run={run}", "format=onnx", f"output={tmp_path / 'link'}"], tmp_path, check=False),
        "symbolic link",
        str(earlier),
    )
    assert (earlier / "export.json").is_file()


# --- 16: refused instead of silently wrong --------------------------------------------------------------------------
def test_a_csv_header_naming_a_column_twice_is_refused(tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label,text\n" + "".join(f"film {i},{('positive', 'negative')[i % 2]},other {i}\n" for i in range(40)))
    _one_line(
        cli(
            [
                "train",
                "task=classification",
                "model=tiny-bert",
                f"task.data.path={data}",
                "task.data.text_columns=[text]",
                "task.data.label_column=label",
                "--dry-run",
            ],
            tmp_path,
            check=False,
        ),
        "reviews.csv",
        "line 1",
        "'text'",
        "twice",
    )


def test_a_conll_tag_without_a_type_is_refused_naming_file_and_line(tmp_path):
    lines = []
    for i in range(30):
        lines += [f"Anna{i} B-PER", "lives O", "in O", "Paris B-LOC" if i != 7 else "Paris B-", ""]
    data = tmp_path / "train.conll"
    data.write_text("\n".join(lines))
    bad_line = lines.index("Paris B-") + 1
    _one_line(
        cli(
            ["train", "task=ner", "model=tiny-bert", f"task.data.path={data}", "task.data.label_names=[]", "--dry-run"],
            tmp_path,
            check=False,
        ),  # the tag set read from the data, where `B-` would become a class
        "train.conll",
        f"line {bad_line}",
        "'B-'",
    )


@pytest.mark.parametrize("save_every, kept", [(0, "none is kept"), (1, "is kept in")])
def test_a_non_finite_loss_keeps_what_its_message_promises(tmp_path, save_every, kept):
    proc = cli(
        [
            "train",
            *FAST,
            "optimizer=sgd",
            "optimizer.lr=1e12",
            "trainer.max_grad_norm=null",
            "trainer.max_steps=20",
            "scheduler.warmup_ratio=0.0",  # the first step already takes the full rate: it diverges before any save
            f"trainer.save_every={save_every}",
        ],
        tmp_path,
        check=False,
    )
    line = _one_line(proc, "the loss became", kept)
    if save_every:
        assert (Path(line.split("is kept in ", 1)[1].split(". ")[0].split(";")[0]) / "trainer_state.pt").is_file()


# --- 16 + 17: serve refuses client mistakes with a 400 naming the field ---------------------------------------------
@pytest.fixture(scope="module")
def decoder_client():
    """A random tiny-gpt2 continuing prompts (256 positions), served in-process."""
    from fastapi.testclient import TestClient

    from llmft import tasks
    from llmft.config import ModelConfig
    from llmft.models import backbone
    from llmft.serving.app import build_app
    from llmft.serving.served_model import ServedModel

    cfg = ModelConfig(name_or_path="builtin:tiny-gpt2")
    source, weights = backbone.resolve(cfg)
    tokenizer = backbone.load_tokenizer(source, cfg)
    task = tasks.prompt_continuation_task(tokenizer, 128)
    model = backbone.load_model(task.auto_class_name, weights, tokenizer, cfg, **task.head_kwargs())
    served = ServedModel("tiny", task, model, tokenizer, 128, "cpu", task.cfg.generation, 4)
    with TestClient(build_app(served, max_batch_size=4)) as client:
        yield client


@NEEDS_SERVE
@pytest.mark.parametrize(
    "body, param, words",
    [
        ({"max_tokens": 10**9}, "max_tokens", "from 1 to"),
        ({"seed": 2**70}, "seed", "from -9223372036854775808 to 18446744073709551615"),
        ({"stop": [""]}, "stop", "empty stop string"),
        ({"stop": ""}, "stop", "empty stop string"),
    ],
)
def test_serve_refuses_out_of_range_fields_with_400(decoder_client, body, param, words):
    response = decoder_client.post("/v1/completions", json={"prompt": "Hello there", **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"], error
    assert decoder_client.post("/v1/completions", json={"prompt": "Hello there", "max_tokens": 2}).status_code == 200


@NEEDS_SERVE
@pytest.mark.parametrize(
    "record, words",
    [
        ('{"format": "onnx", "status": "verif', ["export.json", "damaged", "not JSON"]),
        ('{"format": "onnx", "status": "incomplete"}\n', ["never finished", "incomplete"]),
        ('{"format": "onnx", "status": "verified", "passed": true}\n', ["torn", "no model.onnx"]),
    ],
)
def test_serve_names_what_is_wrong_with_a_torn_export(run, tmp_path, record, words):
    copy = _copy(run, tmp_path / "run")
    (copy / "export" / "onnx").mkdir(parents=True)
    (copy / "export" / "onnx" / "export.json").write_text(record)
    line = _one_line(cli(["serve", f"run={copy}", "backend=onnx"], tmp_path, check=False), *words)
    assert "no export.json" not in line
