"""The public entry point for data: ``load_examples(path)`` -> ``LoadedData``.

Reads a file or folder (``readers``), detects or takes the format of each file (a folder may mix
formats: pools as users keep them), converts every record (``formats``, or ``columns`` under a
column mapping), gives each example its id and task, and reports what it skipped and which records
repeat. Bad input raises ``InputError`` "FILE:LINE: what is wrong. What to do." unless
``skip_invalid`` asks to skip and count such records instead.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from instruct_select.data.columns import columns_to_messages, parse_columns
from instruct_select.data.example import Example, content_id
from instruct_select.data.formats import (FORMATS, RecordError, check_format_name,
                                          check_messages, check_sni_document, detect_format,
                                          to_messages, unknown_format_message)
from instruct_select.data.readers import Location, RawFile, RawRecord, read_path
from instruct_select.errors import InputError

# Record fields that name the task, in order; "dataset" and "source" are how merged mixtures
# (Tulu, OpenHermes) label where each record came from.
TASK_FIELDS = ("task", "domain", "dataset", "source", "category")
MIXED = "mixed"  # LoadedData.format of a folder whose files are in different formats


@dataclass
class LoadedData:
    """Examples loaded from one source, with what is needed to report on them and write back.

    skipped:    (location, reason) for each record left out under skip_invalid.
    duplicates: examples whose content (and task) repeat an earlier one's and that had no id of
                their own; they are kept, with ids suffixed "-2", "-3", ...
    files:      the raw files read, in order; ``origins`` maps each id to its file's position.
    file_formats: each file's format, in the order of ``files``; ``format`` is their one format,
                or "mixed".
    """

    examples: list[Example]
    format: str
    container: str  # "jsonl" | "json" | "parquet" | "hf" | "dir"
    source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: int = 0
    files: list[RawFile] = field(default_factory=list, repr=False)
    origins: dict[str, int] = field(default_factory=dict, repr=False)
    locations: dict[str, Location] = field(default_factory=dict, repr=False)
    file_formats: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over ids, tasks, subtasks and messages, in id order: the same data gives the
        same fingerprint whatever its container, file order or record order."""
        rows = sorted(([e.id, e.task, e.subtask, e.messages] for e in self.examples),
                      key=lambda row: row[0])
        payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def by_id(self) -> dict[str, Example]:
        return {e.id: e for e in self.examples}

    def summary(self) -> str:
        """A few lines for a person: counts per task, skipped records, duplicates."""
        tasks = Counter("(none)" if e.task is None else e.task for e in self.examples)
        lines = [f"{len(self.examples)} examples from {self.source} "
                 f"({self.container}, {self.format}); {len(tasks)} task(s)"]
        lines += [f"  {name}: {count}" for name, count in sorted(tasks.items())]
        if self.container == "dir":
            per_file = Counter(self.origins.values())
            lines.append(f"files: {len(self.files)}")
            lines += [f"  {raw.path.name}: {fmt}, {per_file[i]} examples"
                      for i, (raw, fmt) in enumerate(zip(self.files, self.file_formats))]
        lines.append(f"skipped: {len(self.skipped)}")
        lines += [f"  {where}: {why}" for where, why in self.skipped[:5]]
        if len(self.skipped) > 5:
            lines.append(f"  ... and {len(self.skipped) - 5} more")
        lines.append(f"exact duplicates (kept, ids suffixed -2, -3, ...): {self.duplicates}")
        return "\n".join(lines)


@dataclass(frozen=True)
class SourceOptions:
    """Settings of particular sources: the split of a saved DatasetDict, how many positive
    examples a Super-NaturalInstructions task shows before each input, and where a record's task
    comes from (``task``: the task of records that carry none; ``task_field``: the record field
    holding it)."""

    split: str = "train"
    n_demos: int = 0
    task: str | None = None
    task_field: str | None = None


def load_examples(path: str | Path, *, format: str = "auto", id_field: str | None = None,
                  skip_invalid: bool = False, columns: str | Mapping[str, str] | None = None,
                  source: SourceOptions = SourceOptions()) -> LoadedData:
    """Load instruction examples from a file or folder (``path``); returns them with what was
    skipped, the duplicates, and where each came from (``LoadedData``).

    format:       "auto" (each file detected on its own) or one of FORMATS (every file).
    id_field:     the record field holding the id; default "id" when present, else a content hash.
    skip_invalid: skip invalid records and list them in ``skipped`` instead of raising.
    columns:      a column mapping (``columns.py``), "prompt=q,response=a" or a dict, for records
                  in no known format; every file is read through it (format "columns").
    source:       the split to take from a saved DatasetDict (``source.split``); for
                  Super-NaturalInstructions, the positive examples shown before each input
                  (``source.n_demos``); ``source.task``, the task for records that carry none (e.g.
                  a BBH file's name: in a folder, a file's stem is the fallback after this; a
                  Super-NaturalInstructions file's task is always its stem); ``source.task_field``,
                  the record field holding the task (default the first of task, domain, category).
    """
    if format != "auto":
        _check(check_format_name, format)
    mapping = _parse_columns(columns)
    if mapping and format != "auto":
        raise InputError(f"--format {format} and --columns both say how to read the records; give "
                         "one of them.")
    split, n_demos, task, task_field = source.split, source.n_demos, source.task, source.task_field
    if n_demos < 0:
        raise InputError(f"n_demos={n_demos}: it must be 0 or more.")
    container, files = read_path(path, split)
    formats = ["columns"] * len(files) if mapping else _resolve_formats(format, files, n_demos)
    builder = _Builder(task_field, id_field, skip_invalid, n_demos, mapping)
    for index, (raw, fmt) in enumerate(zip(files, formats)):
        fallback = task
        if fmt == "sni" or (container == "dir" and task is None):
            fallback = raw.path.stem
        builder.add_file(index, raw, fallback, fmt)
    if not builder.examples:
        first = builder.skipped[0] if builder.skipped else ("", "")
        raise InputError(f"{path}: no valid examples; all {len(builder.skipped)} records were "
                         f"skipped (first: {first[0]}: {first[1]}).")
    one = formats[0] if len(set(formats)) == 1 else MIXED
    return LoadedData(builder.examples, one, container, str(path), builder.skipped,
                      builder.duplicates, files, builder.origins, builder.locations, formats)


def _parse_columns(columns: str | Mapping[str, str] | None) -> dict[str, str] | None:
    try:
        return parse_columns(columns)
    except RecordError as err:
        raise InputError(str(err)) from None


def _resolve_formats(requested: str, files: list[RawFile], n_demos: int) -> list[str]:
    """Each file's format: the requested one, or what the file's first record looks like (a
    folder may mix formats; each file is one format)."""
    formats = []
    for raw in files:
        fmt = requested if requested != "auto" else _detect(raw)
        if fmt == "sni":
            _check(check_sni_document, raw.document, n_demos, where=str(raw.path))
        formats.append(fmt)
    return formats


def _detect(raw: RawFile) -> str:
    first = next((r for r in raw.records if r.data is not None), None)
    if first is None:  # every line was unreadable: report the first
        problem = raw.records[0]
        raise InputError(f"{problem.location}: {problem.problem}")
    fmt = detect_format(first.data, raw.document)
    if fmt is None:
        raise InputError(f"{first.location}: {unknown_format_message(list(first.data))}")
    return fmt


def _check(check: Any, *args: Any, where: str | None = None) -> None:
    """Run a formats check, turning its RecordError into an InputError naming ``where``."""
    try:
        check(*args)
    except RecordError as err:
        raise InputError(f"{where}: {err}" if where else str(err)) from None


class _Builder:
    """Converts records one by one, assigning ids and collecting skips."""

    def __init__(self, task_field: str | None, id_field: str | None, skip_invalid: bool,
                 n_demos: int, columns: Mapping[str, str] | None) -> None:
        self.task_field, self.id_field = task_field, id_field
        self.skip_invalid, self.n_demos, self.columns = skip_invalid, n_demos, columns
        self.examples: list[Example] = []
        self.skipped: list[tuple[str, str]] = []
        self.duplicates = 0
        self.origins: dict[str, int] = {}
        self.locations: dict[str, Location] = {}

    def add_file(self, index: int, raw: RawFile, fallback_task: str | None, fmt: str) -> None:
        for record in raw.records:
            try:
                example = self._convert(record, raw.document, fallback_task, fmt)
            except RecordError as err:
                where = _describe(record)
                if not self.skip_invalid:
                    raise InputError(f"{where}: {err}") from None
                self.skipped.append((where, str(err)))
                continue
            self.examples.append(example)
            self.origins[example.id] = index
            self.locations[example.id] = record.location

    def _convert(self, raw: RawRecord, document: Mapping | None, fallback: str | None,
                 fmt: str) -> Example:
        if raw.data is None:
            raise RecordError(raw.problem)
        record = raw.data
        if fmt == "columns":
            messages = columns_to_messages(record, self.columns)
            check_messages(messages)
        else:
            messages = to_messages(fmt, record, document, self.n_demos)
        task = self._task(record, fallback)
        subtask = _label(record, "subtask") if record.get("subtask") is not None else None
        given = self._given_id(record)
        if given is not None:
            if given in self.locations:
                raise RecordError(
                    f"duplicate id '{given}', first seen at {self.locations[given]}. Ids must be "
                    "unique: fix one of them, or name a unique field with --id-field FIELD.")
            return Example(given, task, messages, subtask, record)
        return Example(self._content_id(messages, task), task, messages, subtask, record)

    def _task(self, record: Mapping[str, Any], fallback: str | None) -> str | None:
        if self.task_field is not None:
            if record.get(self.task_field) is None:
                raise RecordError(f"missing task field '{self.task_field}' (named by task_field); "
                                  f"the record has {sorted(record)}.")
            return _label(record, self.task_field)
        key = next((k for k in TASK_FIELDS if record.get(k) is not None), None)
        return _label(record, key) if key else fallback

    def _given_id(self, record: Mapping[str, Any]) -> str | None:
        if self.id_field is not None:
            if record.get(self.id_field) is None:
                raise RecordError(f"missing id field '{self.id_field}' (named by --id-field); the "
                                  f"record has {sorted(record)}.")
            return _label(record, self.id_field)
        return _label(record, "id") if record.get("id") is not None else None

    def _content_id(self, messages: list[dict[str, str]], task: str | None) -> str:
        """A hash of the content; a repeat gets "-2", "-3", ... and is counted, not dropped."""
        base = candidate = content_id(messages, task)
        suffix = 1
        while candidate in self.locations:
            suffix += 1
            candidate = f"{base}-{suffix}"
        self.duplicates += suffix > 1
        return candidate


def _label(record: Mapping[str, Any], key: str) -> str:
    """An id or task label as a string: strings as they are, integers converted."""
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(f"field '{key}' is {type(value).__name__} {value!r:.40}, expected a "
                          "string or an integer.")
    text = str(value)
    if not text.strip():
        raise RecordError(f"field '{key}' is empty; give it a value or remove it.")
    return text


def _describe(raw: RawRecord) -> str:
    """The record's location, with its id when it has one and no line number pins it down."""
    given = raw.data.get("id") if raw.data else None
    if raw.location.line is None and isinstance(given, (str, int)):
        return f"{raw.location} (id '{given}')"
    return str(raw.location)


__all__ = ["FORMATS", "LoadedData", "load_examples"]


def load_test_sets(path: str | Path) -> dict[str, list[Example]]:
    """Test or validation sets grouped by capability: the task field, else the file's stem."""
    sets: dict[str, list[Example]] = {}
    for example in load_examples(path).examples:
        sets.setdefault(example.task or Path(path).stem, []).append(example)
    return sets
