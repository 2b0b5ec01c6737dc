"""Read raw records from a path: JSONL, JSON, Parquet, a ``datasets`` save_to_disk folder, or a
folder of such files.

Readers know containers, not formats: they return plain dicts, each with the place it came from
(file and line, or file and position) so that later errors can point at it. Turning a record into
an ``Example`` is ``formats.py``'s job. A bad line in a JSONL file is returned as a record with a
``problem`` rather than raised, so that ``skip_invalid`` can count it and go on; a problem with a
whole file (empty, not UTF-8, malformed JSON document, missing split) is raised at once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from instruct_select.errors import InputError

# Keys under which a JSON object commonly holds its list of records (BBH uses "examples",
# Super-NaturalInstructions "Instances"); looked up in this order.
LIST_KEYS = ("examples", "data", "instances", "Instances", "rows", "records")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class Location:
    """Where a record came from: ``path:line`` for JSONL, ``path: where`` for the others."""

    path: str
    line: int | None = None  # 1-based line in a JSONL file
    index: int | None = None  # 0-based position in the file's list or table
    where: str | None = None  # e.g. "examples[3]", "row 3", "train row 3"

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.path}:{self.line}"
        return f"{self.path}: {self.where}" if self.where else self.path


@dataclass
class RawRecord:
    """One raw record, or (``data`` None) a line that could not be read, with why."""

    data: dict[str, Any] | None
    location: Location
    problem: str | None = None


@dataclass
class RawFile:
    """The records of one file, plus what is needed to write a selection back in its shape."""

    path: Path
    container: str  # "jsonl" | "json" | "parquet" | "hf"
    records: list[RawRecord]
    document: dict[str, Any] | None = None  # a JSON object that held the list under list_key
    list_key: str | None = None
    schema: Any = field(default=None, repr=False)  # pyarrow schema or datasets Features


def read_path(path: str | Path, split: str = "train") -> tuple[str, list[RawFile]]:
    """Read every record under ``path``; returns the container kind and the files read."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory. Check the path.")
    try:
        if path.is_dir():
            if _is_hf_dir(path):
                return "hf", [read_hf(path, split)]
            return "dir", [read_file(p, split) for p in _data_files(path)]
        raw = read_file(path, split)
    except PermissionError as err:
        raise InputError(f"{err.filename or path}: cannot be read ({err.strerror}); make it readable (chmod) "
                         "or give another input") from None
    return raw.container, [raw]


def read_file(path: Path, split: str = "train") -> RawFile:
    """Read one file (or a save_to_disk folder found inside a directory), by its suffix."""
    if path.is_dir():
        return read_hf(path, split)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind == "parquet":
        return read_parquet(path)
    if kind is None:
        raise InputError(
            f"{path}: unknown file type '{path.suffix}'. Supported: "
            f"{', '.join(sorted(SUFFIXES))}, or a folder saved with datasets' save_to_disk."
        )
    data = path.read_bytes()
    if not data.strip():
        raise InputError(f"{path}: the file is empty. Point at a file that holds records.")
    _refuse_binary(path, data)
    return read_jsonl(path, data) if kind == "jsonl" else read_json(path, data)


def read_jsonl(path: Path, data: bytes) -> RawFile:
    """One JSON object per line; blank lines are allowed; bad lines become problem records."""
    records = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte-order mark, which some editors write
        if raw.strip():
            records.append(_jsonl_line(path, number, raw))
    opens_bare = data.split(b"\n", 1)[0].strip() in (b"[", b"{")
    if records and opens_bare and all(r.problem for r in records):
        # A bare bracket on the first line: one JSON document spread over lines, not JSON Lines.
        raise InputError(
            f"{records[0].location}: {records[0].problem} The file looks like a single JSON "
            "document rather than one object per line; rename it to .json."
        )
    return RawFile(path, "jsonl", records)


def _jsonl_line(path: Path, number: int, raw: bytes) -> RawRecord:
    location = Location(str(path), line=number)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return RawRecord(None, location, _utf8_problem(raw, err))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return RawRecord(
            None, location, f"malformed JSON ({err.msg} at column {err.colno}). "
            "Fix or remove the line, or pass --skip-invalid to skip bad lines."
        )
    if not isinstance(value, dict):
        return RawRecord(
            None, location, f"the line holds a JSON {_json_type(value)}, not an object. "
            "Each line must be one JSON object (one record)."
        )
    return RawRecord(value, location)


def read_json(path: Path, data: bytes) -> RawFile:
    """A JSON list of objects, or an object holding that list under one of ``LIST_KEYS``."""
    text = _decode_document(path, data)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            lines = read_jsonl(path, data)  # a .json file that is really JSON Lines
            if not any(r.problem for r in lines.records):
                return lines
        raise InputError(
            f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno}). "
            "Fix the file; a JSON file must be one valid document."
        ) from None
    if isinstance(value, list):
        return RawFile(path, "json", _list_records(path, value, ""))
    if isinstance(value, dict):
        key = next((k for k in LIST_KEYS if isinstance(value.get(k), list)), None)
        if key is not None:
            return RawFile(path, "json", _list_records(path, value[key], key), value, key)
        raise InputError(
            f"{path}: a JSON object with keys {sorted(value)} and no list of records. Put the "
            f"records in a top-level list, or under one of the keys {', '.join(LIST_KEYS)}."
        )
    raise InputError(f"{path}: the file holds a JSON {_json_type(value)}; expected a list of "
                     "records or an object holding one.")


def _list_records(path: Path, items: list[Any], key: str) -> list[RawRecord]:
    records = []
    for i, item in enumerate(items):
        location = Location(str(path), index=i, where=f"{key}[{i}]")
        if isinstance(item, dict):
            records.append(RawRecord(item, location))
        else:
            records.append(RawRecord(
                None, location, f"a JSON {_json_type(item)} where a record (object) belongs."
            ))
    if not records:
        raise InputError(f"{path}: the list of records{f' under {key!r}' if key else ''} is "
                         "empty. Point at a file that holds records.")
    return records


def read_parquet(path: Path) -> RawFile:
    """A Parquet table: one record per row, column names as keys."""
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise InputError(f"{path}: cannot read as Parquet ({err}). Check the file.") from None
    rows = table.to_pylist()
    if not rows:
        raise InputError(f"{path}: the Parquet table has no rows.")
    records = [RawRecord(r, Location(str(path), index=i, where=f"row {i}"))
               for i, r in enumerate(rows)]
    return RawFile(path, "parquet", records, schema=table.schema)


def read_hf(path: Path, split: str = "train") -> RawFile:
    """A folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    import datasets  # here, not at the top: ~0.6 s to import, and only this container needs it

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # datasets raises FileNotFoundError, ValueError, ...
        raise InputError(f"{path}: cannot load with datasets.load_from_disk ({err}). "
                         "Check that the folder was written by save_to_disk.") from None
    where = "row"
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise InputError(
                f"{path}: the dataset has no split '{split}'; its splits are "
                f"{', '.join(sorted(loaded))}. Save the split you want as a folder of its own "
                f"(dataset_dict[NAME].save_to_disk(...)), or from Python pass "
                f"source=SourceOptions(split=NAME) to load_examples."
            )
        loaded, where = loaded[split], f"{split} row"
    rows = loaded.to_list()
    if not rows:
        raise InputError(f"{path}: the dataset has no rows.")
    records = [RawRecord(r, Location(str(path), index=i, where=f"{where} {i}"))
               for i, r in enumerate(rows)]
    return RawFile(path, "hf", records, schema=loaded.features)


def _is_hf_dir(path: Path) -> bool:
    return any((path / name).is_file()
               for name in ("dataset_dict.json", "state.json", "dataset_info.json"))


def _data_files(folder: Path) -> list[Path]:
    """The readable files in a folder, sorted by name; other files (LICENSE, README) are left."""
    found = sorted(p for p in folder.iterdir() if not p.name.startswith(".")
                   and (p.suffix.lower() in SUFFIXES and p.is_file()
                        or p.is_dir() and _is_hf_dir(p)))
    if not found:
        raise InputError(
            f"{folder}: no data files in this folder (looked for {', '.join(sorted(SUFFIXES))} "
            "files and save_to_disk folders). Point at a file or a folder of such files."
        )
    return found


# What a JSON file is not, told by its first bytes: (magic, what it is, what to do).
BINARY_KINDS = (
    (b"\x1f\x8b", "gzip-compressed data", "decompress it first (gunzip FILE)"),
    (b"PAR1", "a Parquet file", "rename it to .parquet"),
    (b"PK\x03\x04", "a zip archive", "unzip it first"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data", "decompress it first (zstd -d FILE)"),
    (b"BZh", "bzip2-compressed data", "decompress it first (bunzip2 FILE)"),
    (b"\xfd7zXZ\x00", "xz-compressed data", "decompress it first (unxz FILE)"),
    (b"ARROW1", "an Arrow file", "load it with datasets and save_to_disk, or write it as .parquet"),
)


def _refuse_binary(path: Path, data: bytes) -> None:
    """A compressed or binary file under a JSON name is named for what it is (not given a Latin-1 hint)."""
    for magic, what, fix in BINARY_KINDS:
        if data.startswith(magic):
            raise InputError(f"{path}: the file holds {what}, not {path.suffix[1:].upper()} text; {fix}")


def _decode_document(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: {_utf8_problem(data, err)}") from None


def _utf8_problem(data: bytes, err: UnicodeDecodeError) -> str:
    column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    return (
        f"not valid UTF-8 (byte 0x{data[err.start]:02x} at column {column}). Re-encode the "
        "file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in > out` if it is Latin-1."
    )


def _json_type(value: Any) -> str:
    names = {list: "array", dict: "object", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
