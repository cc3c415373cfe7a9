"""LoRA runs kept as adapters behind one server (`llmft serve runs=[a,b]`: each a model id, the adapter chosen per
request by `model`) and the hand-over to vLLM (`backend=vllm`): its command built from the runs, and without vLLM
installed one line naming the install command, exit 2."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import cli, only_run_dir
from test_serve import PROMPT, _client, chat_run  # noqa: F401  (fixtures)

pytest.importorskip("fastapi")
pytest.importorskip("openai")


@pytest.fixture(scope="module")
def adapter_runs(chat_run, tmp_path_factory) -> list[Path]:
    """Two tiny LoRA chat runs kept as adapters (finetune.merge=false) on the chat run's checkpoint as their base."""
    base = chat_run / "checkpoints" / "best"
    runs = []
    for name, seed in (("alpha", 1), ("beta", 2)):
        root = tmp_path_factory.mktemp(name)
        cli(
            [
                "train",
                "task=chat",
                f"model.name_or_path={base}",
                "model.max_length=128",
                "finetune=lora",
                "finetune.merge=false",
                "finetune.lora_r=4",
                "trainer.max_steps=2",
                "trainer.batch_size=8",
                "task.data.max_train_samples=16",
                "task.data.max_eval_samples=8",
                "trainer.progress=false",
                "optimizer.lr=0.2",
                "scheduler=constant",
                f"seed={seed}",
                f"run_name={name}",
                "task.generation.max_new_tokens=8",
            ],
            cwd=root,
        )
        runs.append(only_run_dir(root / "outputs"))
    return runs


def _served_runs(runs: list[Path]):
    from llmft.commands.serve import load_served
    from llmft.deploy_config import ServeConfig, Device

    return load_served(ServeConfig(runs=[str(r) for r in runs], device=Device.cpu))


@pytest.mark.slow  # two LoRA trainings: ~11 s
def test_adapter_runs_share_one_base_and_model_picks_the_adapter(adapter_runs):
    from llmft.serving.app import build_app
    from llmft.serving.server import BackgroundServer

    served = _served_runs(adapter_runs)
    assert type(served.model).__name__ == "PeftModelForCausalLM"  # served as adapters, not merged
    with BackgroundServer(build_app(served, batch_window_ms=5)) as url:
        client = _client(url)
        assert [m.id for m in client.models.list().data] == ["alpha", "beta"]
        answers = {}
        for name in ("alpha", "beta", "alpha"):
            answer = client.completions.create(model=name, prompt=PROMPT, max_tokens=4, temperature=0, logprobs=1)
            assert answer.model == name
            answers.setdefault(name, []).append(answer.choices[0].logprobs.token_logprobs)
    assert answers["alpha"][0] == pytest.approx(answers["alpha"][1], abs=1e-5)  # switching back gives alpha again
    assert answers["alpha"][0] != pytest.approx(answers["beta"][0], abs=1e-3)
    for run, name in zip(adapter_runs, ("alpha", "beta")):  # each id answers as its run served alone
        alone = _served_runs([run])
        with BackgroundServer(build_app(alone, batch_window_ms=5)) as url:
            own = _client(url).completions.create(model=name, prompt=PROMPT, max_tokens=4, temperature=0, logprobs=1)
        assert own.choices[0].logprobs.token_logprobs == pytest.approx(answers[name][0], abs=1e-4)


def test_runs_must_be_adapters(chat_run, tmp_path):
    proc = cli(["serve", f"runs=[{chat_run}]"], tmp_path, check=False)
    assert proc.returncode == 2 and "finetune.merge=false" in proc.stderr, proc.stderr


def test_vllm_command_for_a_checkpoint_and_for_adapters(tmp_path):
    from llmft.errors import UserError
    from llmft.serving.vllm_handover import Served, vllm_command

    whole = tmp_path / "whole"
    whole.mkdir()
    command = vllm_command([Served("mine", whole)], "0.0.0.0", 8001, "k3y", python="py")
    assert command == [
        "py",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host",
        "0.0.0.0",
        "--port",
        "8001",
        "--api-key",
        "k3y",
        "--model",
        str(whole),
        "--served-model-name",
        "mine",
    ]
    adapters = []
    for name, rank in (("a", 4), ("b", 24)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/base", "r": rank}))
        adapters.append(Served(name, folder))
    (adapters[0].folder / "chat_template.jinja").write_text("{{ messages }}")
    command = vllm_command(adapters, "127.0.0.1", 8000, None, python="py")
    assert command[command.index("--model") + 1] == "/models/base" and "--enable-lora" in command
    assert command[command.index("--max-lora-rank") + 1] == "32" and command[command.index("--max-loras") + 1] == "2"
    assert command[command.index("--lora-modules") + 1 :][:2] == [f"a={adapters[0].folder}", f"b={adapters[1].folder}"]
    assert command[-2:] == ["--chat-template", str(adapters[0].folder / "chat_template.jinja")] and "--api-key" not in command
    with pytest.raises(UserError, match="one base"):
        other = tmp_path / "c"
        other.mkdir()
        (other / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/other"}))
        vllm_command([*adapters, Served("c", other)], "127.0.0.1", 8000, None)
    with pytest.raises(UserError, match="not both"):
        vllm_command([adapters[0], Served("mine", whole)], "127.0.0.1", 8000, None)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed: the hand-over would start it")
def test_backend_vllm_without_vllm_is_one_line_naming_the_install(tmp_path):
    proc = cli(["serve", f"run={tmp_path}", "backend=vllm", "port=8123", "api_key=k"], tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install vllm" in lines[0], proc.stderr
