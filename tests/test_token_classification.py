"""Token classification / NER (task=ner, task=token-classification): seqeval's metrics on fixed cases (IOB1 and IOB2),
the CoNLL reader, first-sub-word labels, bad rows refused in one line, and one tiny run through the real CLI whose
checkpoint the transformers pipeline loads and whose `llmft generate` prints entities with character spans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli, only_run_dir

NER = ["task=ner", "model=tiny-bert", "model.dropout=0.0", "trainer.progress=false", "task.data.max_eval_samples=200"]
PROMPT = "Jordan Smith flew to Washington to meet Ford executives on Monday ."


# --- metrics: seqeval on fixed cases -----------------------------------------------------------------------------------

GOLD = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "O", "B-MISC", "B-PER"], ["O", "B-LOC", "I-LOC"]]
PRED = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["B-ORG", "O", "O", "B-MISC", "B-PER"], ["O", "I-LOC", "I-LOC"]]


def _iob1(sentences: list[list[str]]) -> list[list[str]]:
    """IOB2 -> IOB1: B- only where an entity follows one of the same type."""
    out = []
    for tags in sentences:
        row = []
        for i, tag in enumerate(tags):
            after_same = i > 0 and tags[i - 1] != "O" and tags[i - 1][2:] == tag[2:]
            row.append("I-" + tag[2:] if tag.startswith("B-") and not after_same else tag)
        out.append(row)
    return out


def test_entity_metrics_equal_seqeval_and_read_iob1_as_iob2():
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    from llmft.evaluation.entities import entity_metrics

    m = entity_metrics(GOLD, PRED)
    pred = [*PRED[:2], ["O", "B-LOC", "I-LOC"]]  # seqeval reads I-LOC I-LOC as this LOC; token accuracy takes tags as given
    assert m["f1"] == pytest.approx(f1_score(GOLD, pred)) and m["precision"] == pytest.approx(precision_score(GOLD, pred))
    assert m["recall"] == pytest.approx(recall_score(GOLD, pred)) and m["accuracy"] == pytest.approx(accuracy_score(GOLD, PRED))
    assert m["f1"] == pytest.approx(f1_score(GOLD, PRED))  # as given, seqeval finds the same entities
    report = classification_report(GOLD, pred, output_dict=True)
    for kind in ("PER", "ORG", "LOC", "MISC"):
        assert m[f"f1_{kind}"] == pytest.approx(report[kind]["f1-score"]) and m[f"support_{kind}"] == report[kind]["support"]
    # by hand: 6 gold and 6 predicted entities; 4 match (both PER, MISC, and the LOC that opens with I- as conlleval
    # reads it); the cut ORG and the LOC predicted as ORG do not. LOC: precision 1/1, recall 1/2
    assert (m["precision"], m["recall"], m["f1_PER"], m["f1_LOC"]) == pytest.approx((4 / 6, 4 / 6, 1.0, 2 / 3))
    iob1 = entity_metrics(_iob1(GOLD), _iob1(PRED))
    assert {**iob1, "accuracy": 0} == pytest.approx({**m, "accuracy": 0})  # the same entities in either scheme
    assert _iob1([["B-PER", "B-PER"]]) == [["I-PER", "B-PER"]]  # two adjacent people stay two in IOB1
    assert entity_metrics([["I-PER", "B-PER"]], [["I-PER", "I-PER"]])["recall"] == 0.0  # ...and count as two


# --- reading rows ----------------------------------------------------------------------------------------------------

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
.\t.\tO\tO


Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
-DOCSTART- -X- -X- O
BRUSSELS NNP B-NP I-LOC
"""


def test_conll_reader_skips_docstart_and_splits_sentences_at_blank_lines(tmp_path):
    from llmft.config import ConfigError, DataConfig
    from llmft.data.loading import load_raw
    from llmft.errors import UserError

    (tmp_path / "train.conll").write_text(CONLL)
    read = list(load_raw(DataConfig(path=str(tmp_path / "train.conll")))["train"])
    assert [row.pop("__line__") for row in read] == [3, 10, 13]  # each sentence's first line, for error messages
    rows = read
    assert rows == [
        {"tokens": ["EU", "rejects", "German", "call", "."], "ner_tags": ["I-ORG", "O", "I-MISC", "O", "O"]},
        {"tokens": ["Peter", "Blackburn"], "ner_tags": ["I-PER", "I-PER"]},
        {"tokens": ["BRUSSELS"], "ner_tags": ["I-LOC"]},
    ]
    (tmp_path / "eng.txt").write_text(CONLL.replace("\n", "\r\n"))  # any name with task.data.format=conll; CRLF lines
    crlf = list(load_raw(DataConfig(path=str(tmp_path / "eng.txt"), format="conll"))["train"])
    assert [row.pop("__line__") for row in crlf] == [3, 10, 13] and crlf == rows
    with pytest.raises(ConfigError, match="task.data.format=xml is not one of"):
        DataConfig(format="xml")
    (tmp_path / "bad.iob").write_text("EU B-ORG\nrejects\n")
    with pytest.raises(UserError, match=r"bad.iob, line 2: one column"):
        load_raw(DataConfig(path=str(tmp_path / "bad.iob")))


def _task(label_all_subwords: bool = False, label_names=None, tokenizer=None):
    from llmft.config import DataConfig
    from llmft.tasks import get_task
    from llmft.tasks.options import TokenClassificationOptions

    data = DataConfig(path="x", text_columns=["tokens"], label_column="ner_tags", label_names=label_names)
    return get_task(TokenClassificationOptions(data=data, label_all_subwords=label_all_subwords), tokenizer, 64)


def test_a_word_trains_its_first_subword_or_every_one_and_integer_tags_take_label_names():
    import datasets

    from llmft.models.builtin import minilm_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    words, tags = ["Okafor", "visited", "Tegucigalpa", "."], ["B-PER", "O", "B-LOC", "O"]
    pieces = [len(tokenizer.tokenize(w)) for w in words]
    assert pieces[0] > 1 and pieces[2] > 1  # two words that split
    ds = datasets.Dataset.from_list([{"tokens": words, "ner_tags": tags}])
    splits = {"train": ds, "eval": ds, "test": ds}

    task = _task(tokenizer=tokenizer)
    row = task.prepare(splits)["train"][0]
    names = task.label_names
    assert names == ["O", "B-LOC", "B-PER"]  # read from train: O first
    expected, starts = [-100], [0]  # [CLS]
    for word, n in zip(tags, pieces):
        expected += [names.index(word)] + [-100] * (n - 1)
        starts += [1] + [0] * (n - 1)
    assert row["labels"] == expected + [-100] and row["word_starts"] == starts + [0]

    every = _task(label_all_subwords=True, label_names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], tokenizer=tokenizer)
    int_rows = datasets.Dataset.from_list([{"tokens": words, "ner_tags": [1, 0, 3, 0]}])  # ids, named by label_names
    row = every.prepare({"train": int_rows, "eval": int_rows, "test": int_rows})["train"][0]
    assert row["labels"][1 : 1 + pieces[0]] == [1] + [2] * (pieces[0] - 1)  # B-PER, then I-PER on later sub-words
    assert row["word_starts"][1 : 1 + pieces[0]] == [1] + [0] * (pieces[0] - 1)  # scored on the first one only


@pytest.mark.parametrize(
    "row, message",
    [
        ({"tokens": ["Jordan", "said"], "ner_tags": ["B-PER"]}, "2 tokens but 1 tags in 'ner_tags'"),
        ({"tokens": ["Jordan", "said"], "ner_tags": ["B-PER", "X-WHAT"]}, "tag 'X-WHAT' is not in the tag set"),
        ({"tokens": [], "ner_tags": []}, "'tokens' must be a non-empty list"),
    ],
)
def test_bad_rows_exit_2_in_one_line_naming_the_line(tmp_path, row, message):
    good = {"tokens": ["Ford", "rose", "."], "ner_tags": ["B-ORG", "O", "O"]}
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [good] * 5 + [row]))
    proc = cli(
        [
            "train",
            "task=token-classification",
            "model=tiny-bert",
            f"task.data.path={path}",
            "task.data.label_names=[O,B-PER,I-PER,B-ORG,I-ORG]",
            "task.data.carve_ratio=0.2",
            "task.data.split_seed=0",
            "trainer.max_steps=1",
            "trainer.progress=false",
        ],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = next(x for x in proc.stderr.splitlines() if x.startswith("error: "))
    assert message in line and "line 6 of" in line, line


# --- one tiny run through the CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory) -> Path:
    """tiny-bert on the bundled sentences, long enough to find entities."""
    root = tmp_path_factory.mktemp("ner_run")
    cli(
        [
            "train",
            *NER,
            "task.data.max_train_samples=1500",
            "trainer.epochs=2",
            "trainer.batch_size=16",
            "optimizer.lr=3e-3",
            "trainer.eval_every=40",
            "trainer.log_every=10",
        ],
        cwd=root,
    )
    return only_run_dir(root / "outputs")


def test_ner_trains_and_eval_reproduces_its_test_metrics(ner_run, tmp_path):
    records = [json.loads(x) for x in (ner_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses[-1] < losses[0] / 2
    result = json.loads((ner_run / "eval.json").read_text())
    metrics = result["metrics"]
    assert metrics["f1"] > 0.4 and metrics["samples"] == 200 and {"f1_PER", "f1_LOC", "f1_ORG", "f1_MISC"} <= set(metrics)
    assert result["select_metric"] == "f1"
    cli(["eval", f"run={ner_run}"], cwd=tmp_path)
    again = json.loads(next(tmp_path.glob("outputs/eval/*/*/eval.json")).read_text())["metrics"]
    assert again["f1"] == pytest.approx(metrics["f1"]) and again["accuracy"] == pytest.approx(metrics["accuracy"])


def test_pipeline_loads_the_checkpoint_and_generate_prints_spans_of_the_input(ner_run, tmp_path):
    from transformers import pipeline

    best = ner_run / "checkpoints" / "best"
    simple = pipeline("token-classification", model=str(best), aggregation_strategy="simple")(PROMPT)
    assert simple and {"entity_group", "score", "word", "start", "end"} <= set(simple[0])
    out = cli(["generate", f"run={ner_run}", f"prompt={PROMPT}"], cwd=tmp_path).stdout
    result = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    entities = result["entities"]
    assert result["text"] == PROMPT and entities
    for e in entities:
        assert e["word"] == PROMPT[e["start"] : e["end"]] and e["entity_group"] in {"PER", "ORG", "LOC", "MISC"}
    first = pipeline("token-classification", model=str(best), aggregation_strategy="first")(PROMPT)  # what generate reads
    assert [(e["entity_group"], e["start"], e["end"]) for e in entities] == [
        (e["entity_group"], e["start"], e["end"]) for e in first
    ]
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": PROMPT}) + "\n" + json.dumps({"text": "Nothing here ."}) + "\n")
    cli(["generate", f"run={ner_run}", "input=in.jsonl", "output=out.jsonl"], cwd=tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == [PROMPT, "Nothing here ."] and rows[0]["entities"] == entities


def test_user_conll_folder_in_iob1_trains_through_token_classification(tmp_path):
    (tmp_path / "data").mkdir()
    train = "".join(f"{w} NNP I-{t}\nsaid VBD O\n.\tO\n\n" for w, t in [("Ford", "ORG"), ("Jordan", "PER"), ("Paris", "LOC")] * 6)
    (tmp_path / "data" / "train.conll").write_text(train)
    (tmp_path / "data" / "dev.conll").write_text("-DOCSTART- O\n\nFord NNP I-ORG\nsaid O\n")
    cli(
        [
            "train",
            "task=token-classification",
            "model=tiny-bert",
            "task.data.path=data",
            "trainer.max_steps=2",
            "trainer.progress=false",
        ],
        cwd=tmp_path,
    )
    run = only_run_dir(tmp_path / "outputs")
    plan = json.loads((run / "run.json").read_text())["plan"]
    assert plan["labels"] == ["O", "I-LOC", "I-ORG", "I-PER"]
    assert json.loads((run / "checkpoints" / "best" / "config.json").read_text())["id2label"]["2"] == "I-ORG"


# --- slow: resume and torchrun ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ner_killed_and_resumed_matches_an_unbroken_run(tmp_path):
    import signal

    from conftest import run_cli
    from test_resume import _start, _wait_for_step

    args = [
        "train",
        *NER,
        "task.data.max_train_samples=512",
        "trainer.batch_size=16",
        "trainer.max_steps=30",
        "trainer.log_every=1",
        "trainer.eval_every=10",
        "trainer.save_every=7",
        "optimizer.lr=1e-3",
        "model.dropout=0.1",
    ]
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    unbroken.mkdir(), broken.mkdir()
    run_cli(args, cwd=unbroken)
    proc = _start(args, cwd=broken)
    run = _wait_for_step(broken, 16, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((run / "checkpoints" / "last" / "loop_state.json").read_text())["step"]
    assert 7 <= killed_at < 30  # the kill landed mid-run, after at least one checkpoint
    run_cli(["train", f"trainer.resume={run}", "trainer.progress=false"], cwd=broken)
    reference = only_run_dir(unbroken / "outputs")
    curve = [
        (r["step"], r.get("train/loss"), r.get("eval/f1"))
        for r in (json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines())
    ]
    expected = [
        (r["step"], r.get("train/loss"), r.get("eval/f1"))
        for r in (json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines())
    ]
    assert curve == expected
    ours, theirs = (json.loads((r / "eval.json").read_text())["metrics"] for r in (run, reference))
    assert ours["f1"] == theirs["f1"] and ours["loss"] == theirs["loss"]


@pytest.mark.slow
def test_sharded_ner_evaluation_gives_single_process_metrics(tmp_path):
    from conftest import run_cli
    from test_distributed import _torchrun

    args = [
        *NER,
        "task.data.max_train_samples=64",
        "task.data.max_eval_samples=101",
        "trainer.max_steps=4",
        "trainer.eval_every=2",
        "trainer.eval_batch_size=16",
        "optimizer.lr=1e-7",
    ]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir(), ddp.mkdir()
    run_cli(["train", *args, "trainer.batch_size=8"], cwd=single)
    proc = _torchrun([*args, "trainer.batch_size=4"], ddp)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    one, two = only_run_dir(single / "outputs"), only_run_dir(ddp / "outputs")
    evals = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines() if "eval/f1" in x] for r in (one, two)]
    assert evals[0] and len(evals[0]) == len(evals[1])
    for a, b in zip(*evals):
        assert b["eval/samples"] == a["eval/samples"] == 101
        for key in ("eval/f1", "eval/precision", "eval/recall", "eval/accuracy", "eval/loss"):
            assert b[key] == pytest.approx(a[key], abs=1e-5)
    m1, m2 = (json.loads((r / "eval.json").read_text())["metrics"] for r in (one, two))
    assert m2["f1"] == pytest.approx(m1["f1"], abs=1e-6) and m2["samples"] == m1["samples"]
