"""Write a selection back out: the original records in the input's own container and shape, or
examples in the messages format.

Every write is atomic (a temporary file or folder beside the target, then a rename), so a reader
never sees half a file and an interrupted run leaves the old output, if any, in place.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from instruct_select.data.example import Example
from instruct_select.data.loading import LoadedData
from instruct_select.data.readers import RawFile
from instruct_select.errors import ConfigError, InputError

# Extra columns: name -> values, either keyed by id or in the order of ``ids``.
ExtraColumns = Mapping[str, "Mapping[str, Any] | Sequence[Any]"]


def write_records(loaded: LoadedData, ids: list[str], out_path: str | Path,
                  extra_columns: ExtraColumns | None = None) -> Path:
    """Write the original records of ``ids``, in that order, as the input was stored.

    jsonl -> JSON Lines; json -> a list, or the same top-level object with only the selected
    records in its list (BBH's {"canary", "examples"}, a Super-NaturalInstructions task file's
    "Instances"); parquet -> Parquet with the input's schema; hf -> a save_to_disk folder; a
    folder of files -> a folder holding each input file that has selected records.
    ``extra_columns`` adds fields (e.g. a score) to each written record.
    """
    out_path = Path(out_path)
    rows = _selected_rows(loaded, ids, extra_columns or {})
    if loaded.container != "dir":
        _write_file(loaded.files[0], [row for _, row in rows], out_path)
        return out_path

    def write_folder(tmp: Path) -> None:
        for index, raw in enumerate(loaded.files):
            mine = [row for origin, row in rows if origin == index]
            if mine:  # an empty file would not load back; leaving it out is the honest shape
                _write_file(raw, mine, tmp / raw.path.name)

    _atomic_replace(out_path, write_folder, folder=True)
    return out_path


def write_examples_jsonl(examples: Iterable[Example], path: str | Path) -> Path:
    """Write examples as JSON Lines of {"id", "task", "subtask", "messages"}."""
    lines = [json.dumps({"id": e.id, "task": e.task, "subtask": e.subtask,
                         "messages": e.messages}, ensure_ascii=False) + "\n" for e in examples]
    path = Path(path)
    _atomic_replace(path, lambda tmp: tmp.write_text("".join(lines), encoding="utf-8"))
    return path


def _selected_rows(loaded: LoadedData, ids: list[str],
                   extra: ExtraColumns) -> list[tuple[int, dict[str, Any]]]:
    """(file position, record with extra columns) for each id, in the order given."""
    by_id = loaded.by_id()
    if len(set(ids)) != len(ids):
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)[:5]
        raise InputError(f"ids to write repeat: {repeated}. A selection lists each id once.")
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise InputError(f"{len(missing)} id(s) to write are not in {loaded.source}, e.g. "
                         f"{missing[:5]}. Select from the data that was loaded.")
    columns = {name: _column(name, values, ids) for name, values in extra.items()}
    rows = []
    for position, id_ in enumerate(ids):
        record = dict(by_id[id_].record or {})
        for name, values in columns.items():
            if name in record:
                raise ConfigError(f"extra column '{name}' would overwrite a field of the "
                                  "records; choose another name.")
            record[name] = values[position]
        rows.append((loaded.origins[id_], record))
    return rows


def _column(name: str, values: Mapping[str, Any] | Sequence[Any], ids: list[str]) -> list[Any]:
    if isinstance(values, Mapping):
        absent = [i for i in ids if i not in values]
        if absent:
            raise ConfigError(f"extra column '{name}' has no value for ids {absent[:5]}.")
        return [values[i] for i in ids]
    if len(values) != len(ids):
        raise ConfigError(f"extra column '{name}' has {len(values)} values for {len(ids)} ids.")
    return list(values)


def _write_file(raw: RawFile, rows: list[dict[str, Any]], out_path: Path) -> None:
    writers: dict[str, Callable[[Path], None]] = {
        "jsonl": lambda tmp: _write_jsonl(rows, tmp),
        "json": lambda tmp: _write_json(raw, rows, tmp),
        "parquet": lambda tmp: _write_parquet(raw, rows, tmp),
        "hf": lambda tmp: _write_hf(raw, rows, tmp),
    }
    _atomic_replace(out_path, writers[raw.container], folder=raw.container == "hf")


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")


def _write_json(raw: RawFile, rows: list[dict[str, Any]], path: Path) -> None:
    value: Any = rows
    if raw.document is not None:  # keep the other top-level keys (canary, Definition, ...)
        value = {k: rows if k == raw.list_key else v for k, v in raw.document.items()}
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write_parquet(raw: RawFile, rows: list[dict[str, Any]], path: Path) -> None:
    schema = raw.schema
    for name in (rows[0].keys() - set(schema.names)) if rows else ():
        # Extra columns take the type Arrow infers for them; the input's columns keep theirs.
        schema = schema.append(pa.field(name, pa.array([r[name] for r in rows]).type))
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _write_hf(raw: RawFile, rows: list[dict[str, Any]], path: Path) -> None:
    import datasets  # here, not at the top: ~0.6 s to import, and only this container needs it

    base = [name for name in raw.schema]
    table = datasets.Dataset.from_list([{k: r[k] for k in base} for r in rows],
                                       features=raw.schema)
    for name in (rows[0].keys() - set(base)) if rows else ():
        table = table.add_column(name, [r[name] for r in rows])
    table.save_to_disk(str(path))


def _atomic_replace(target: Path, write: Callable[[Path], None], folder: bool = False) -> None:
    """Call ``write`` on a temporary path beside ``target``, then rename it into place.

    A file is swapped in with os.replace, which is atomic. A folder cannot be replaced
    atomically when one already exists, so the old one is renamed aside first and removed only
    after the new one is in place.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}."
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix, suffix=".tmp"))
    inner = tmp if folder else tmp / target.name
    try:
        if folder:
            inner.rmdir()  # save_to_disk and friends want to create the folder themselves
        write(inner)
        if folder and target.exists():
            old = target.parent / f"{prefix}old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(inner, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(inner, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
