"""Issue 9, text side: every response token supervised at a whitespace boundary (5), truncation sides in training and
generation (6), EOS on seq2seq targets and a model's list of EOS ids in generation (10b), bounded tokenization of huge
rows (17)."""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset

from llmft.models import backbone
from llmft.config import GenerationConfig, ModelConfig, Side, TextMetric
from llmft.tasks.options import ClassificationOptions, TextGenerationOptions
from llmft.tasks.causal_lm import IGNORE, CausalLMTask
from llmft.tasks.text_common import Example

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_tok():
    source, _ = backbone.resolve(ModelConfig(name_or_path="builtin:tiny-gpt2"))
    return backbone.load_tokenizer(source, ModelConfig())


@pytest.fixture(scope="module")
def trimming_tok(tiny_tok):
    """The tiny tokenizer with offsets that leave out the leading space (RoBERTa / GPT-2 with trim_offsets)."""
    from tokenizers import processors

    tok = copy.deepcopy(tiny_tok)
    tok.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    return tok


@pytest.fixture(scope="module")
def smollm2_tok():
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer

    from llmft.models import smollm2
    from llmft.errors import UserError

    try:
        folder, gguf_file = smollm2.package_gguf()
    except UserError as ex:
        pytest.skip(str(ex))
    return AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)


@pytest.fixture(scope="module")
def tiny_gpt2(tiny_tok):
    from transformers import AutoModelForCausalLM

    from llmft.models.builtin import tiny_config

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config("tiny-gpt2", tiny_tok)).eval()


def _causal(tokenizer, max_length=128, **cfg) -> CausalLMTask:
    task = CausalLMTask(TextGenerationOptions(family="causal_lm", **cfg))
    task.tokenizer, task.max_length = tokenizer, max_length
    return task


def _assert_supervised_by_overlap(tokenizer, features, text, span, add_special_tokens=True):
    """A token is a target exactly when its characters overlap the response span."""
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    assert features["input_ids"][: len(enc["input_ids"])] == enc["input_ids"]
    lo, hi = span
    for tid, (start, end), label in zip(enc["input_ids"], enc["offset_mapping"], features["labels"]):
        overlaps = start < hi and end > lo
        assert label == (tid if overlaps else IGNORE), (tokenizer.convert_ids_to_tokens(tid), (start, end), span)


# --- 5: a prompt that ends in whitespace ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny_tok", "trimming_tok", "smollm2_tok"])
@pytest.mark.parametrize(
    "template, response", [("Question: {q}\nAnswer: ", "five"), ("Q: {q}\nA:", " five"), ("{q} =", " 5 apples")]
)
def test_every_response_token_is_supervised(request, name, template, response):
    tokenizer = request.getfixturevalue(name)
    task = _causal(tokenizer, prompt_template=template, response_column="a", use_chat_template=False)
    prompt = template.format(q="what is two plus three?")
    f = task.encode({"q": "what is two plus three?", "a": response})
    _assert_supervised_by_overlap(tokenizer, f, prompt + response, (len(prompt), len(prompt) + len(response)))
    assert f["labels"][-1] == tokenizer.eos_token_id
    # generation continues from exactly the tokens training saw before the first target
    first = next(i for i, label in enumerate(f["labels"]) if label != IGNORE)
    generation_ids = tokenizer(task.generation_prompt(Example(prompt, "")), add_special_tokens=True)["input_ids"]
    assert generation_ids == f["input_ids"][:first]


@pytest.mark.parametrize("name", ["tiny_tok", "smollm2_tok"])
def test_chat_template_supervises_every_assistant_token(request, name):
    tokenizer = copy.deepcopy(request.getfixturevalue(name))
    if name == "tiny_tok":  # an assistant header that ends in a space, which BPE merges into the first answer token
        tokenizer.chat_template = (
            "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant: {% endif %}"
        )
    task = _causal(tokenizer, prompt_template="{q}", response_column="a")
    assert task.chat
    f = task.encode({"q": "what is two plus three?", "a": "five apples"})
    messages = [{"role": "user", "content": "what is two plus three?"}, {"role": "assistant", "content": "five apples"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    before = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    _assert_supervised_by_overlap(tokenizer, f, text, (len(before), len(text)), add_special_tokens=False)
    supervised = tokenizer.decode([t for t in f["labels"] if t != IGNORE])
    assert "five apples" in supervised and "two plus" not in supervised
    first = next(i for i, label in enumerate(f["labels"]) if label != IGNORE)
    generation_prompt = task.generation_prompt(Example("what is two plus three?", ""))
    assert tokenizer(generation_prompt, add_special_tokens=False)["input_ids"] == f["input_ids"][:first]


# --- 6: truncation sides ---------------------------------------------------------------------------------------------
def _seq2seq_labels(tokenizer, rows, **cfg):
    from llmft.tasks.seq2seq import Seq2SeqTask

    options = TextGenerationOptions(family="seq2seq", prompt_template="{src}", response_column="tgt", **cfg)
    task = Seq2SeqTask(options, tokenizer=tokenizer, max_length=16)
    out = task.prepare({"train": Dataset.from_list(rows)})
    return task, out["train"]


def test_seq2seq_targets_are_cut_on_the_right_whatever_the_source_side(tiny_tok):
    target = "one two three four five six seven eight nine ten eleven twelve"
    source = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma"
    task, train = _seq2seq_labels(tiny_tok, [{"src": source, "tgt": target}], truncation_side=Side.left, max_target_length=6)
    labels = train[0]["labels"]
    assert labels[:5] == tiny_tok(target)["input_ids"][:5]  # the start of the summary is kept
    assert train[0]["input_ids"] == tiny_tok(source)["input_ids"][-16:]  # the source is cut on the side asked for
    assert tiny_tok.truncation_side == "right"  # no global change left behind
    assert task.data_stats["train"]["truncated"] == 1


def test_decoders_truncate_on_the_left_by_default():
    assert TextGenerationOptions(family="causal_lm").input_truncation_side is Side.left
    assert TextGenerationOptions(family="seq2seq").input_truncation_side is Side.right
    assert TextGenerationOptions(family="causal_lm", truncation_side=Side.right).input_truncation_side is Side.right
    from test_compose import _compose

    from llmft.commands.common import to_typed
    from llmft.config import TrainConfig

    def compose_typed(overrides):
        return to_typed(_compose("train", overrides), TrainConfig)

    assert compose_typed(["task=sft", "model=tiny-gpt2"]).task.input_truncation_side is Side.left  # through the real configs
    assert compose_typed(["task=sentiment"]).task.input_truncation_side is Side.right
    assert compose_typed(["task=sft", "task.truncation_side=right"]).task.input_truncation_side is Side.right


def _spy_generate(model, monkeypatch, outputs: bool = False) -> list[torch.Tensor]:
    """What `model.generate` is handed (its prompt ids), or what it returns."""
    seen: list[torch.Tensor] = []
    real = model.generate

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(out if outputs else kwargs["input_ids"].clone())
        return out

    monkeypatch.setattr(model, "generate", spy)
    return seen


@pytest.mark.parametrize("side", [Side.left, Side.right])
def test_generation_cuts_the_prompt_on_the_training_side(tiny_tok, tiny_gpt2, monkeypatch, side):
    from llmft.config import PrecisionMode
    from llmft.engine.precision import resolve_precision
    from llmft.tasks.text_common import generation_partial

    task = _causal(
        tiny_tok,
        max_length=48,
        prompt_template="{story}\nAnswer:",
        response_column="a",
        truncation_side=side,
        use_chat_template=False,
        eval_generate_samples=2,
        text_metric=TextMetric.exact_match,
    )
    task.cfg.generation = GenerationConfig(max_new_tokens=8)
    story = "Start of the story. " + "The fox ran over the hill again. " * 30
    task.examples["validation"] = [Example(f"{story}\nAnswer:", "x", ["x"])]
    seen = _spy_generate(tiny_gpt2, monkeypatch)
    generation_partial(task, tiny_gpt2, "validation", resolve_precision(PrecisionMode.fp32, CPU))
    prompt = tiny_tok.decode(seen[0][0])
    assert seen[0].shape[1] == 48 - 8  # the prompt leaves room for the new tokens within model.max_length
    if side is Side.left:
        assert prompt.endswith("\nAnswer:")  # the cue survives
        task.cfg.generation = GenerationConfig(max_new_tokens=40)
        generation_partial(task, tiny_gpt2, "validation", resolve_precision(PrecisionMode.fp32, CPU))
        assert seen[1].shape[1] == 24  # a long answer asked for: the prompt still keeps half of model.max_length
    else:
        assert prompt.startswith("Start of the story.")


# --- 10b: EOS --------------------------------------------------------------------------------------------------------
def test_seq2seq_targets_end_with_eos_exactly_once(tiny_tok):
    from tokenizers import processors

    adds_eos = copy.deepcopy(tiny_tok)  # a T5-like tokenizer whose post-processor appends EOS itself
    adds_eos.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {adds_eos.eos_token}",
        pair=f"$A {adds_eos.eos_token} $B {adds_eos.eos_token}",
        special_tokens=[(adds_eos.eos_token, adds_eos.eos_token_id)],
    )
    rows = [
        {"src": "a short source", "tgt": "the sun"},
        {"src": "x", "tgt": "one two three four five six seven eight"},
        {"src": "y", "tgt": f"ends with the marker {tiny_tok.eos_token}"},
    ]
    for tokenizer in (tiny_tok, adds_eos):
        _, train = _seq2seq_labels(tokenizer, rows, max_target_length=6)
        for labels in train["labels"]:
            assert labels[-1] == tiny_tok.eos_token_id and tiny_tok.eos_token_id not in labels[:-1], labels
            assert len(labels) <= 6
        short = tiny_tok("the sun")["input_ids"]
        assert len(short) < 5
        assert train[0]["labels"] == short + [tiny_tok.eos_token_id]


def test_generation_stops_at_any_eos_the_model_lists(tiny_tok, tiny_gpt2, monkeypatch):
    from llmft.inference.generation import generate

    second_eos = tiny_tok("z")["input_ids"][0]  # a chat model's end-of-turn id, listed only in generation_config
    model = copy.deepcopy(tiny_gpt2)
    model.generation_config.eos_token_id = [tiny_tok.eos_token_id, second_eos]
    bias = torch.zeros(model.config.vocab_size)
    bias[second_eos] = 1e4  # the model says nothing but the end of its turn
    model.lm_head.register_forward_hook(lambda module, inputs, out: out + bias)
    seen = _spy_generate(model, monkeypatch, outputs=True)
    generate(model, tiny_tok, ["Hello there"], GenerationConfig(max_new_tokens=6), CPU)
    prompt_length = len(tiny_tok("Hello there")["input_ids"])
    assert seen[0][0, prompt_length:].tolist() == [second_eos]  # stopped at the first end-of-turn


# --- 17: a huge row costs what its truncated length needs ---------------------------------------------------------------
class CountingTokenizer:
    """Delegates to a real tokenizer and records the longest text it was handed."""

    def __init__(self, tokenizer):
        self.__dict__["_tok"], self.__dict__["longest"] = tokenizer, 0

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __setattr__(self, name, value):
        setattr(self._tok, name, value)

    def _note(self, value):
        if isinstance(value, str):
            self.__dict__["longest"] = max(self.longest, len(value))
        elif isinstance(value, (list, tuple)):
            for v in value:
                self._note(v)

    def __call__(self, *args, **kwargs):
        self._note(args)
        self._note([kwargs.get("text_target")])
        return self._tok(*args, **kwargs)


WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore"
HUGE = 3_000_000  # characters


def _long_text(n_chars: int) -> str:
    words = WORDS.split()
    return " ".join(words[i % len(words)] + str(i % 7) for i in range(n_chars // 8))


def test_classification_tokenizes_a_huge_row_by_its_truncated_length(tiny_tok):
    from llmft.config import DataConfig
    from llmft.tasks.classification import ClassificationTask

    base = _long_text(20_000)
    huge = base + " " + _long_text(HUGE)
    texts = ["short one", "", base, huge, " ".join(["word"] * 64), " ".join(["word"] * 65)]
    rows = Dataset.from_dict({"text": texts, "label": ["a", "b"] * 3})
    counting = CountingTokenizer(tiny_tok)
    task = ClassificationTask(ClassificationOptions(data=DataConfig()), tokenizer=counting, max_length=64)
    out = task.prepare({"train": rows})["train"]
    assert counting.longest < 50_000  # never the whole huge row
    kept = [t for t in texts if t.strip()]
    assert out["input_ids"] == [tiny_tok(t, truncation=True, max_length=64)["input_ids"] for t in kept]
    full_lengths = [len(tiny_tok(t)["input_ids"]) if t is not huge else 10**6 for t in kept]
    assert task.data_stats["train"]["truncated"] == sum(n > 64 for n in full_lengths) >= 2


def test_pairs_and_left_side_keep_what_full_tokenization_keeps(tiny_tok):
    from llmft.data.truncation import encode_rows

    base = _long_text(20_000)
    firsts, seconds = ["a question", base, base[:300], "tiny"], [base, "short", base[:290], "text"]
    for side in (Side.left, Side.right):
        tiny_tok.truncation_side = side.value
        try:
            want = tiny_tok(firsts, seconds, truncation=True, max_length=64)["input_ids"]
            n_full = [len(ids) for ids in tiny_tok(firsts, seconds)["input_ids"]]
        finally:
            tiny_tok.truncation_side = "right"
        got, truncated = encode_rows(tiny_tok, [firsts, seconds], 64, side)
        assert got["input_ids"] == want and truncated == [n > 64 for n in n_full] == [True, True, True, False]
        single, _ = encode_rows(tiny_tok, [[_long_text(HUGE // 4) + " " + base]], 64, side)
        if side is Side.left:
            assert single["input_ids"][0] == tiny_tok(base)["input_ids"][-64:]


def test_seq2seq_and_causal_lm_tokenize_a_huge_row_by_its_truncated_length(tiny_tok):
    base = _long_text(20_000)
    huge = base + " " + _long_text(HUGE)
    counting = CountingTokenizer(tiny_tok)
    task, train = _seq2seq_labels(counting, [{"src": huge, "tgt": huge}, {"src": "short", "tgt": "short"}], max_target_length=8)
    assert counting.longest < 50_000
    assert train[0]["input_ids"] == tiny_tok(base)["input_ids"][:16]
    assert train[0]["labels"] == tiny_tok(base)["input_ids"][:7] + [tiny_tok.eos_token_id]
    assert task.data_stats["train"]["truncated"] == 1

    counting = CountingTokenizer(tiny_tok)
    for side, text in ((Side.right, huge), (Side.left, _long_text(HUGE) + " " + base)):
        task = _causal(
            counting,
            max_length=64,
            prompt_template="Q: {q}\nA:",
            response_column="a",
            use_chat_template=False,
            truncation_side=side,
        )
        f = task.encode({"q": "go on", "a": " " + text})
        assert counting.longest < 50_000 and f["truncated"] and len(f["input_ids"]) == 64
        full = tiny_tok("Q: go on\nA: " + base)["input_ids"] + [tiny_tok.eos_token_id]  # what the whole text keeps
        assert f["input_ids"] == (full[:64] if side is Side.right else full[-64:])
        assert all(label in (IGNORE, tid) for label, tid in zip(f["labels"], f["input_ids"]))
        assert (f["labels"][0] == IGNORE) is (side is Side.right)  # the prompt's tokens stay masked
