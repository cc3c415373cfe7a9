"""The CUDA path, which the CPU suite cannot see: fp16 with a real GradScaler, bf16 autocast, the fused CUDA AdamW,
batched generation, packing, exact resume, FSDP and `precision=auto`. Marked `gpu` and skipped without CUDA (cheap to
collect: nothing heavy runs at import); `bench/gpu/check.sh` runs them on a GPU machine with `-m gpu`.

The last test is not a GPU test: it runs the GPU check's CPU dry path, so the kit does not rot while no GPU is lent."""

from __future__ import annotations

import copy
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import only_run_dir, run_cli, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
# LLMFT_GPU_TEST_DEVICE=cpu rehearses these tests on a CPU (fp16 ones skipped: llmft refuses fp16 there), so a one-shot
# GPU run does not spend its minutes on a typo
DEVICE = os.environ.get("LLMFT_GPU_TEST_DEVICE", "cuda")
RUNNABLE = torch.cuda.is_available() or DEVICE == "cpu"


def gpu(test):
    """A test that needs CUDA: marked `gpu`, skipped on a machine without it."""
    return pytest.mark.gpu(pytest.mark.skipif(not RUNNABLE, reason="needs a CUDA GPU (bench/gpu/check.sh runs it there)")(test))


fp16 = pytest.mark.skipif(DEVICE == "cpu", reason="fp16 needs CUDA")


# a tiny decoder's SFT, long enough for the loss to move: 12 steps, a log record per step, an eval with generation
SFT = [
    "task=sft",
    "model=tiny-gpt2",
    "task.data.max_train_samples=256",
    "task.data.max_eval_samples=32",
    "task.eval_generate_samples=8",
    "trainer.batch_size=8",
    "trainer.max_steps=12",
    "trainer.log_every=1",
    "trainer.eval_every=6",
    "trainer.progress=false",
    "optimizer.lr=3e-3",
    f"trainer.device={DEVICE}",
]


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _train(run: Path) -> list[dict]:
    return [r for r in _records(run) if "train/lr" in r]  # a window whose steps all overflowed (fp16) logs no loss


def _parts(overrides: list[str]):
    """Everything `llmft train` builds for these overrides, in this process."""
    from hydra import compose, initialize_config_dir

    from llmft.commands.setup import build_run
    from llmft.cli import register_recipes
    from llmft.commands.common import to_typed
    from llmft.cli import register_configs
    from llmft.config import TrainConfig
    from llmft.paths import conf_dir

    register_configs()
    register_recipes()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        config = to_typed(compose("train", overrides=overrides), TrainConfig)
    parts = build_run(config)
    parts.trainer_cfg = config.trainer
    return parts


def _step_parts(parts, loss_fn=None):
    from llmft.engine.loop import StepParts

    return StepParts(
        parts.model,
        loss_fn or parts.task,
        parts.optimizer,
        parts.scheduler,
        parts.scaler,
        parts.precision,
        parts.trainer_cfg,
        parts.dist,
    )


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory) -> Path:
    """One CLI run on the GPU with `precision=auto`, shared by the tests that read a finished run."""
    cwd = tmp_path_factory.mktemp("auto")
    run_cli(["train", *SFT, "precision=auto"], cwd=cwd)
    return only_run_dir(cwd / "outputs")


@gpu
def test_precision_auto_picks_bf16_on_the_gpu_and_keeps_fp32_weights(auto_run):
    plan = json.loads((auto_run / "run.json").read_text())["plan"]
    assert plan["precision"] == ("bf16" if DEVICE == "cuda" else "fp32") and plan["device"].startswith(DEVICE)
    losses = [r["train/loss"] for r in _train(auto_run)]
    assert len(losses) == 12 and all(map(math.isfinite, losses))
    assert losses[-1] < losses[0]
    from safetensors.torch import load_file

    weights = load_file(auto_run / "checkpoints" / "best" / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}  # autocast computes in bf16; the weights stay fp32


@pytest.fixture(scope="module")
def bf16_parts():
    return _parts([*SFT, "precision=bf16", "model.dropout=0.0"])


@gpu
def test_bf16_autocast_computes_in_bf16_on_fp32_weights(bf16_parts):
    parts = bf16_parts
    batch = {k: v.to(DEVICE) for k, v in next(iter(parts.train_loader)).items()}
    with parts.precision.autocast():
        logits = parts.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert logits.dtype == torch.bfloat16 and logits.device.type == DEVICE
    assert all(p.dtype == torch.float32 and p.device.type == DEVICE for p in parts.model.parameters())


@gpu
@pytest.mark.filterwarnings("ignore:Seems like .optimizer.step")  # the test's own wrapper
def test_the_fused_cuda_adamw_steps_like_the_for_loop_one(bf16_parts):
    """llmft picks the fused (one-kernel) AdamW on CUDA; one step of it moves the weights as torch's for-loop AdamW."""
    from llmft.engine.loop import LoopState, optimizer_step

    parts = bf16_parts
    optimizer = parts.optimizer
    assert optimizer.defaults["fused"] is True
    reference = copy.deepcopy(parts.model)
    twin = dict(zip(parts.model.parameters(), reference.parameters()))
    loop_adamw = torch.optim.AdamW(
        [
            {
                "params": [twin[p] for p in g["params"]],
                "lr": g["lr"],
                "weight_decay": g["weight_decay"],
                "betas": g["betas"],
                "eps": g["eps"],
            }
            for g in optimizer.param_groups
        ],
        foreach=False,
        fused=False,
    )
    fused_step = optimizer.step

    def step_with_a_copy(*args, **kwargs):  # the reference steps on the very gradients (clipped) the fused one gets
        for p, r in twin.items():
            r.grad = None if p.grad is None else p.grad.detach().clone()
        return fused_step(*args, **kwargs)

    optimizer.step = step_with_a_copy
    before = parts.model.get_input_embeddings().weight.detach().clone()
    try:
        assert optimizer_step(_step_parts(parts), [next(iter(parts.train_loader))], LoopState()) is not None
    finally:
        optimizer.step = fused_step
    loop_adamw.step()
    assert all(optimizer.state[p]["exp_avg"].device.type == DEVICE for p in twin)
    assert not torch.equal(parts.model.get_input_embeddings().weight, before)  # the step moved the weights
    for (name, fused), plain in zip(parts.model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6, msg=name)


@gpu
@fp16
def test_fp16_with_the_grad_scaler_through_the_cli_logs_the_scale(tmp_path):
    run_cli(["train", *SFT, "precision=fp16"], cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    assert json.loads((run / "run.json").read_text())["plan"]["precision"] == "fp16"
    train = _train(run)
    assert len(train) == 12
    assert all(r["train/grad_scale"] > 0 and r["train/skipped_steps"] >= 0 for r in train)
    evals = [r for r in _records(run) if "eval/loss" in r]
    assert evals and all(math.isfinite(r["eval/loss"]) for r in evals)
    assert all(math.isfinite(r["train/loss"]) for r in train if "train/loss" in r)  # skipped steps' inf is not averaged
    assert sum("train/loss" in r for r in train) == 12 - train[-1]["train/skipped_steps"]


class OverflowOnSecondCall:
    """The task's loss, made infinite on its second call: an fp16 overflow the GradScaler must catch."""

    def __init__(self, task):
        self.task, self.calls = task, 0

    def count(self, batch):
        return self.task.count(batch)

    def loss_sum(self, model, batch):
        self.calls += 1
        loss = self.task.loss_sum(model, batch)
        return loss * float("inf") if self.calls == 2 else loss


@gpu
@fp16
def test_an_injected_fp16_overflow_is_skipped_and_keeps_the_schedule():
    from llmft.config import MetricMode
    from llmft.engine.loop import Hooks, Selection, fit
    from llmft.reporting.console import MetricsLog
    from conftest import RecordingSink

    parts = _parts([*SFT, "precision=fp16", "model.dropout=0.0", "trainer.max_steps=4"])
    log = RecordingSink()
    hooks = Hooks(evaluate=lambda: {"loss": 0.0}, on_best=lambda step, metrics: None, record=MetricsLog(None, log).write)
    scale = parts.scaler.get_scale()
    state = fit(
        _step_parts(parts, OverflowOnSecondCall(parts.task)), parts.train_loader, Selection("loss", MetricMode.min), hooks, 4
    )
    train = [r for r in log.records if "train/loss" in r]
    assert state.step == 4 and state.skipped_steps >= 1  # the injected one (a natural overflow would add to it)
    assert train[1]["train/skipped_steps"] == train[0]["train/skipped_steps"] + 1  # step 2 overflowed
    assert train[1]["train/grad_scale"] == train[0]["train/grad_scale"] / 2 <= scale
    assert parts.scheduler.last_epoch == state.step - state.skipped_steps  # a skipped step leaves the schedule put
    assert all(torch.isfinite(p).all() for p in parts.model.parameters())


@gpu
def test_batched_generation_on_cuda_equals_cpu_greedy(auto_run, tmp_path):
    prompts = [
        "What is 2 + 3?",
        "Add 17 and 25.",
        "What is 9 + 1?",
        "Sum 100 and 250, then say the result.",
        "1 + 1",
        "What is 40 + 2?",
        "Add 7 and 8 and tell me.",
        "What is 123 + 456?",
        "3 + 4",
    ]
    inputs = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in prompts])
    outputs = {}
    for device in (DEVICE, "cpu"):
        out = tmp_path / f"{device}.jsonl"
        run_cli(
            [
                "generate",
                f"run={auto_run}",
                f"input={inputs}",
                f"output={out}",
                f"device={device}",
                "batch_size=4",
                "generation.batch_size=4",
                "generation.max_new_tokens=12",
            ],
            cwd=tmp_path,
        )
        outputs[device] = [json.loads(x)["generation"] for x in out.read_text().splitlines()]
    assert len(outputs[DEVICE]) == len(prompts)
    assert outputs[DEVICE] == outputs["cpu"]  # left-padded batches of mixed lengths, greedy: the same tokens


def _summed_loss(parts) -> tuple[float, int]:
    parts.model.eval()
    total, items = 0.0, 0
    with torch.no_grad():
        for batch in parts.train_loader:
            batch = {k: v.to(DEVICE) for k, v in batch.items()}
            total += float(parts.task.loss_sum(parts.model, batch))
            items += parts.task.count(batch)
    return total, items


def _tiny_qwen() -> str:
    sys.path.insert(0, str(ROOT / "bench" / "gpu"))
    from shapes import shape_path

    return f"model.name_or_path={shape_path('qwen2.5-0.5b', tiny=True)}"


@gpu
@pytest.mark.parametrize("model", ["model=tiny-gpt2", "qwen2-shape"])
def test_packing_on_cuda_gives_the_unpacked_loss(model):
    """The SDPA kernels CUDA picks for packed rows (block-diagonal masks from restarting positions) keep examples apart."""
    model = _tiny_qwen() if model == "qwen2-shape" else model
    base = [
        "task=sft",
        model,
        "model.dropout=0.0",
        "task.data.max_train_samples=96",
        "model.max_length=128",
        "precision=fp32",
        f"trainer.device={DEVICE}",
    ]
    plain_total, plain_items = _summed_loss(_parts(base))
    total, items = _summed_loss(_parts([*base, "task.packing=true"]))
    assert items == plain_items
    assert total == pytest.approx(plain_total, rel=1e-5)


DETERMINISTIC = "import torch\ntorch.use_deterministic_algorithms(True)\n"
KILL_AFTER_STEP_4 = (
    DETERMINISTIC
    + """
import os, signal
import llmft.engine.loop as loop
_after = loop._after_step
def _after_then_kill(state, *args, **kwargs):
    _after(state, *args, **kwargs)
    if state.step == 4:  # the checkpoint of step 3 is on disk; step 4 is lost and must be replayed
        os.kill(os.getpid(), signal.SIGKILL)
loop._after_step = _after_then_kill
"""
)


def _cli(args: list[str], cwd: Path, prelude: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", CUBLAS_WORKSPACE_CONFIG=":4096:8")  # deterministic cuBLAS
    code = f"import sys\n{prelude}\nfrom llmft.cli import main\nmain(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@gpu
def test_resume_on_cuda_equals_an_unbroken_run_with_deterministic_algorithms(tmp_path):
    # dropout on: the CUDA RNG state must come back
    args = ["train", *SFT, f"precision={'bf16' if DEVICE == 'cuda' else 'fp32'}", "trainer.save_every=3"]
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    unbroken.mkdir(), broken.mkdir()
    proc = _cli(args, unbroken, DETERMINISTIC)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _cli(args, broken, KILL_AFTER_STEP_4)
    assert proc.returncode == -9, proc.stderr[-3000:]
    run = only_run_dir(broken / "outputs")
    assert json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"] == 3
    proc = _cli(["train", f"trainer.resume={run}", "trainer.progress=false"], broken, DETERMINISTIC)
    assert proc.returncode == 0, proc.stderr[-3000:]
    keys = ("step", "train/loss", "train/lr", "eval/loss", "eval/exact_match")
    curve = [[{k: r[k] for k in keys if k in r} for r in _records(x)] for x in (run, only_run_dir(unbroken / "outputs"))]
    assert curve[0] == curve[1]  # bitwise


@gpu
def test_fsdp_with_one_process_under_torchrun_trains_as_the_plain_run(auto_run, tmp_path):
    """`trainer.strategy=fsdp` on one GPU: torchrun with one process runs (one rank: nothing to shard) and follows the
    single-process run's curve."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "1",
            "-m",
            "llmft",
            "train",
            *SFT,
            "precision=auto",
            "trainer.strategy=fsdp",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run_dir(tmp_path / "outputs")
    assert json.loads((run / "run.json").read_text())["plan"]["processes"] == 1
    ours, plain = ([r["train/loss"] for r in _train(x)] for x in (run, auto_run))
    assert ours == pytest.approx(plain, rel=1e-3)


@gpu
def test_fsdp2_sharded_model_on_a_one_rank_nccl_group_steps_as_the_plain_model():
    """FSDP2 on CUDA with NCCL, driven by llmft's step (gradient sync off for all but the last micro-batch) and gathered
    by its full-state helpers: the sharded model follows the plain one."""
    from torch.distributed.fsdp import fully_shard

    from llmft.engine.strategy import full_optimizer_state, full_state_dict
    from llmft.models.finetune import _layers
    from llmft.engine.loop import LoopState, optimizer_step
    from llmft.engine.optim import build_optimizer
    from llmft.config import OptimizerConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cuda = DEVICE == "cuda"
    torch.distributed.init_process_group(
        "nccl" if cuda else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=0,
        world_size=1,
        device_id=torch.device("cuda", 0) if cuda else None,
    )
    try:
        parts = _parts([*SFT, f"precision={'bf16' if cuda else 'fp32'}", "model.dropout=0.0"])
        plain = copy.deepcopy(parts.model)
        sharded = parts.model
        for layer in _layers(sharded):  # as the FSDP strategy wraps under torchrun with several processes
            fully_shard(layer)
        fully_shard(sharded)
        batches = [b for b, _ in zip(parts.train_loader, range(6))]  # three steps of two micro-batches
        losses = {}
        for name, model in (("plain", plain), ("sharded", sharded)):
            run = copy.copy(parts)
            run.model, run.optimizer = model, build_optimizer(OptimizerConfig(lr=1e-3, fused=False), model)
            run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda s: 1.0)
            losses[name] = [float(optimizer_step(_step_parts(run), batches[i : i + 2], LoopState())) for i in (0, 2, 4)]
            if name == "sharded":
                gathered = full_state_dict(model)
                assert full_optimizer_state(model, run.optimizer)["state"]
        assert losses["sharded"] == pytest.approx(losses["plain"], rel=1e-3)
        reference = plain.state_dict()
        assert gathered and set(gathered) <= set(reference)
        for key, value in gathered.items():
            torch.testing.assert_close(value.float(), reference[key].cpu().float(), rtol=1e-3, atol=1e-4, msg=key)
    finally:
        torch.distributed.destroy_process_group()


def _wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    import zipfile

    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        meta = [f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
        archive.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(meta) + "\n")
    return path


def test_the_gpu_check_installs_only_the_wheels_this_python_lacks(tmp_path):
    """bench/gpu/deps.py: a carried wheel whose package is missing is installed, with the carried wheels its requirements
    need (also where the installed version is excluded); one that is present stays out; an unmet requirement is named."""
    sys.path.insert(0, str(ROOT / "bench" / "gpu"))
    from deps import plan

    top = _wheel(tmp_path, "llmft_kit_top", "1.0", ["llmft_kit_dep>=2", "pytest>=1", "pytest<1; extra == 'x'"])
    dep = _wheel(tmp_path, "llmft_kit_dep", "2.0", ["packaging>=999"])
    present = _wheel(tmp_path, "pytest", "0.1", [])
    chosen, unmet = plan([top, dep, present])
    assert chosen == [dep, top]
    assert unmet == [f"packaging>=999 (have {__import__('packaging').__version__})"]
    pinned = _wheel(
        tmp_path, "llmft_kit_pin", "1.0", ["pytest==0.1"]
    )  # the installed pytest is excluded: the carried one goes in
    assert plan([pinned, present])[0] == [pinned, present]


@pytest.mark.slow  # ten fresh processes on the CPU: about a minute on 2 cores; CI runs the slow tests too
def test_the_gpu_check_dry_path_runs_on_cpu(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "GPU_CHECK_WORK": str(work), "PYTHON": sys.executable}
    env.pop("OUT", None)
    proc = subprocess.run(
        [
            "bash",
            str(ROOT / "bench" / "gpu" / "check.sh"),
            "--device",
            "cpu",
            "--out",
            str(out),
            "--only",
            "tests,sft,cls,profile",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "bench.log",
        "bench.md",
        "profile.md",
        "summary.md",
        "tests.log",
    ]  # <= 8 come back
    summary = (out / "summary.md").read_text()
    gpu_tests = sum(1 for line in Path(__file__).read_text().splitlines() if line == "@gpu") + 1  # + the parametrized one
    assert f"{gpu_tests} skipped" in summary and "FAILED" not in summary and "STOPPED" not in summary
    tables = (out / "bench.md").read_text()
    for scenario in ("sft-shape-tiny", "cls-shape-tiny"):
        assert f"### {scenario}" in tables
    for row in ("| llmft |", "| llmft-plain |", "| bare |", "| trainer |", "| llmft / trainer |"):
        assert row in tables
    for precision in ("fp32", "bf16"):  # fp16 needs CUDA
        assert f"### cls-shape-tiny precision={precision}" in tables
    profiles = (out / "profile.md").read_text()  # the step profiler, packed and plain, with its operator table
    assert "### profile: sft-shape-tiny, llmft," in profiles and "### profile: sft-shape-tiny, llmft (plain)," in profiles
    assert profiles.count("Self CPU time total") == 2


@gpu
def test_qlora_and_8bit_adamw_train_on_cuda_in_bf16(tmp_path):
    """finetune=qlora on CUDA: 4-bit NF4 base computing in bf16, LoRA adapters, bitsandbytes' 8-bit AdamW; the chunked
    loss under bf16 autocast; the adapter is kept and scored."""
    pytest.importorskip("bitsandbytes")
    args = [
        "train",
        "task=sft",
        "finetune=qlora",
        "optimizer=adamw8bit",
        "optimizer.lr=3e-4",
        "trainer.max_steps=4",
        "trainer.batch_size=4",
        "trainer.log_every=1",
        "trainer.progress=false",
        "task.data.max_train_samples=32",
        "task.data.max_eval_samples=8",
        "task.eval_generate_samples=2",
        "task.generation.max_new_tokens=4",
        f"trainer.device={DEVICE}",
    ]
    run_cli(args, cwd=tmp_path)
    run = only_run_dir(tmp_path / "outputs")
    losses = [r["train/loss"] for r in _records(run) if "train/loss" in r]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    plan = json.loads((run / "run.json").read_text())["plan"]
    assert plan["finetune"] == "qlora" and plan["precision"] == ("bf16" if DEVICE == "cuda" else "fp32")
    assert (run / "checkpoints" / "best" / "adapter_model.safetensors").is_file()
