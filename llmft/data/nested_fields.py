"""Nested records as the field publishes them. SQuAD's official layout (`{"version", "data": [{"title", "paragraphs":
[{"context", "qas": [...]}]}]}`, v1.1 and v2.0) is read as one row per question, in the columns the qa task takes;
and a dotted path (`translation.en`) names a field inside a nested record, in every column option and prompt-template
placeholder, as `datasets` users write it (`Dataset.flatten` names the fields so)."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any, Iterator, Optional

from llmft.errors import UserError, closest

SNIFF_BYTES = 1 << 20  # SQuAD's "paragraphs" key comes within the first article


# --- SQuAD's official layout -------------------------------------------------------------------------------------
def squad_document(file: str) -> Optional[dict[str, Any]]:
    """The parsed file when it holds SQuAD's layout (a top-level object whose `data` articles have `paragraphs`),
    else None. Told from the content, not the name; only a file that looks like it is parsed whole."""
    with open(file, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") or b'"paragraphs"' not in head or b'"data"' not in head:
        return None
    try:
        document = json.loads(Path(file).read_text(encoding="utf-8-sig"))  # a byte-order mark is allowed
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # JSON Lines, or broken: the ordinary reader says what is wrong
    articles = document.get("data") if isinstance(document, dict) else None
    if not isinstance(articles, list) or not articles or not all(isinstance(a, dict) and "paragraphs" in a for a in articles):
        return None
    return document


def squad_rows(document: dict[str, Any], file: str) -> Iterator[dict[str, Any]]:
    """One row per question: id, title, context, question, answers {text: [...], answer_start: [...]}. A v2.0
    unanswerable question (`is_impossible`) gets empty answers, as the qa task represents it."""
    for a, article in enumerate(document["data"]):
        for p, paragraph in enumerate(article["paragraphs"]):
            for q, qa in enumerate(paragraph.get("qas", [])):
                try:
                    row = _squad_row(article, paragraph, qa, default_id=f"{a}-{p}-{q}")
                except (AttributeError, KeyError, TypeError, ValueError) as ex:
                    raise UserError(
                        f"{file}: data[{a}].paragraphs[{p}].qas[{q}] is not a SQuAD question ({type(ex).__name__}: "
                        f"{ex}); it needs a question and answers [{{text, answer_start}}], its paragraph a context"
                    ) from ex
                yield row


def _squad_row(article: dict[str, Any], paragraph: dict[str, Any], qa: dict[str, Any], default_id: str) -> dict[str, Any]:
    answers = [] if qa.get("is_impossible") else qa["answers"]
    return {
        "id": str(qa.get("id", default_id)),
        "title": str(article.get("title", "")),
        "context": paragraph["context"],
        "question": qa["question"],
        "answers": {"text": [x["text"] for x in answers], "answer_start": [int(x["answer_start"]) for x in answers]},
    }


def read_squad(files: dict[str, str]) -> Any:
    """A DatasetDict when any split file holds SQuAD's layout (the others are read as JSON rows), else None."""
    documents = {split: squad_document(file) for split, file in files.items()}
    if not any(documents.values()):
        return None
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "title": datasets.Value("string"),
            "context": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answers": {
                "text": datasets.Sequence(datasets.Value("string")),
                "answer_start": datasets.Sequence(datasets.Value("int32")),
            },
        }
    )
    out = {}
    for split, document in documents.items():
        if document is None:
            out[split] = datasets.load_dataset("json", data_files={split: files[split]})[split]
            continue
        rows = list(squad_rows(document, files[split]))
        if not rows:
            raise UserError(f"{files[split]} holds SQuAD's layout but no question")
        out[split] = datasets.Dataset.from_list(rows, features=features)
    return datasets.DatasetDict(out)


# --- dotted paths --------------------------------------------------------------------------------------------------
def expose(raw: Any) -> Any:
    """Each split with a column per nested field besides the record itself ('translation' gives 'translation.en',
    'translation.ro'), so a column option may name a field by its dotted path. Arrow shares the data (no copy)."""
    import datasets

    return datasets.DatasetDict({split: _with_field_columns(ds) for split, ds in raw.items()})


def _with_field_columns(ds: Any) -> Any:
    import datasets
    import pyarrow as pa

    records = [f.name for f in ds.data.schema if pa.types.is_struct(f.type)]
    if not records:
        return ds
    fields = _with_field_columns(ds.select_columns(records).flatten(max_depth=2))  # one level; deeper ones recurse
    fields = fields.remove_columns([c for c in fields.column_names if c in ds.column_names])
    return datasets.concatenate_datasets([ds, fields], axis=1) if fields.column_names else ds


def field_names(row: dict[str, Any]) -> list[str]:
    """Every field of a row by its dotted path (records and their fields), without llmft's own (__row__)."""
    names: list[str] = []
    for key, value in row.items():
        if key.startswith("__"):
            continue
        names.append(key)
        if isinstance(value, dict):
            names += [f"{key}.{inner}" for inner in field_names(value)]
    return list(dict.fromkeys(names))  # a field exposed as a column of its own is named once


def missing_field(path: str, row: dict[str, Any], what: str) -> UserError:
    """One line naming the field that is not there and the fields that are."""
    names = field_names(row)
    return UserError(f"{what} '{path}' not found in the data{closest(path, names)}; fields: {', '.join(names)}")


def lookup(row: dict[str, Any], path: str, what: str = "field") -> Any:
    """A row's column `path`, or the field the dotted path leads to through nested records."""
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise missing_field(path, row, what)
        value = value[part]
    return value


class _RowFormatter(string.Formatter):
    """str.format over a row whose placeholders may be dotted paths ({translation.en}); `[...]` keeps Python's rules."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        if "[" in field_name:
            return super().get_field(field_name, args, kwargs)
        value = lookup(kwargs, field_name, "task.prompt_template field")
        if isinstance(value, dict):  # str() of a record is not what a prompt means
            raise UserError(
                f"task.prompt_template field '{field_name}' is a record; name one of its fields: "
                f"{', '.join('{' + f'{field_name}.{inner}' + '}' for inner in value)}"
            )
        return value, field_name


def fill_template(template: str, row: dict[str, Any]) -> str:
    """The template with each {field} (a column or a dotted path) replaced by the row's value."""
    try:
        return _RowFormatter().vformat(template, (), row)
    except (KeyError, IndexError, AttributeError) as ex:  # Python's own [...] lookups, {} without a name
        raise UserError(
            f"task.prompt_template cannot be filled from a row ({type(ex).__name__}: {ex}); fields: {', '.join(field_names(row))}"
        ) from ex
