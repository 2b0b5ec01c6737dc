"""Hand a selection to the training tools people already use: a datasets folder or JSONL.

    instruct-select export runs/demo/bids-15pct-seed0/select --pool data/pool.jsonl --to hf --out sel_hf
    instruct-select export runs/demo/bids-15pct-seed0/select --pool data/pool.jsonl --to jsonl --out sel.jsonl

``hf``: a Hugging Face ``datasets`` folder (``save_to_disk``; ``load_from_disk`` reads it), one
row per selected example in rank order, with ``id``, ``task``, ``subtask``, ``messages`` (role /
content: what TRL's SFTTrainer and most chat trainers take), ``rank`` and ``score`` from
``selection.tsv``, and the original record's other fields where Arrow can hold them as columns
(a field whose values mix types is stored as JSON text, and listed in the dataset's description).

``jsonl``: the original records, one per line in rank order, exactly as the pool holds them
(``data.writing.write_records`` for a JSONL pool); LLaMA-Factory (alpaca / sharegpt) and
open-instruct (messages) read these files as they are. A Super-NaturalInstructions pool has no
self-contained records (the definition lives in the file), so it is written as messages. From a
folder whose files are in different formats, each record keeps its own format, so the lines mix
formats (noted; ``hf`` gives every row the same ``messages`` column).

Every export records what it wrote (``.export.json`` inside the ``hf`` folder, ``.NAME.export.json``
beside a JSONL file); ``--overwrite`` replaces only such an earlier export, and an output that is,
holds or lies inside the pool or the selection folder is refused before anything is read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa

from ..artifacts import atomic_path, atomic_write_json, atomic_write_text, check_output_path, read_json
from ..data.loading import load_examples
from ..data.writing import write_examples_jsonl, write_records
from ..errors import ArtifactMismatchError, ConfigError, InputError

TARGETS = ("hf", "jsonl")
RECORD = ".export.json"  # what an export wrote: inside the hf folder, or .NAME.export.json beside a file
OWN_COLUMNS = ("id", "task", "subtask", "messages", "rank", "score")


@dataclass
class ExportResult:
    """What an export wrote: ``path``, the output; ``rows``, the examples written; ``notes``, what
    the user should know about the conversion (fields stored as JSON, a format changed)."""
    path: Path
    rows: int
    notes: list[str] = field(default_factory=list)


def read_selection_table(selection_dir: str | Path) -> list[tuple[str, float | None]]:
    """(id, score or None) per selected example, in rank order, from ``selection.tsv``."""
    table = Path(selection_dir) / "selection.tsv"
    if not table.is_file():
        raise InputError(f"{selection_dir} holds no selection.tsv: give a selection folder "
                         "(what `instruct-select select` writes, e.g. RUN/bids-15pct-seed0/select)")
    if (Path(selection_dir) / "started.json").is_file() and not (Path(selection_dir) / "manifest.json").is_file():
        raise InputError(f"{selection_dir} holds an unfinished selection (its select stage was interrupted); rerun "
                         "the select command that made it to finish it, then export")
    rows = []
    for number, line in enumerate(table.read_text(encoding="utf-8").splitlines()[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise InputError(f"{table}:{number}: expected rank, id, task, score separated by tabs")
        rows.append((parts[1], float(parts[3]) if len(parts) > 3 and parts[3] else None))
    return rows


def export_selection(selection_dir: str | Path, pool: str | Path, to: str, out: str | Path, *,
                     overwrite: bool = False, **reading) -> ExportResult:
    """Write the selection in ``selection_dir`` (made from ``pool``) to ``out`` as ``to`` (hf|jsonl).

    ``reading``: how the pool is read, as the selection read it (``load_examples``'s format,
    id_field, columns, skip_invalid). ``out`` must be a new path, or (``overwrite``) an earlier
    export of the same kind; it is never the selection folder or a folder of other files.
    """
    if to not in TARGETS:
        raise ConfigError(f"--to must be one of {', '.join(TARGETS)}, got {to!r}")
    out = Path(out)
    table = read_selection_table(selection_dir)
    _check_target(Path(selection_dir), Path(pool), to, out, overwrite)
    loaded = load_examples(pool, **reading)
    notes = _check_pool(selection_dir, pool, loaded, [i for i, _ in table])
    if to == "hf":
        notes += write_hf(loaded, table, out, record=_record(selection_dir, pool, to))
    else:
        notes += write_jsonl(loaded, [i for i, _ in table], out)
        atomic_write_json(_record_path(out, to), {**_record(selection_dir, pool, to), "files": [out.name]})
    return ExportResult(out, len(table), notes)


def _record(selection_dir, pool, to: str) -> dict:
    return {"command": "export", "to": to, "selection": str(selection_dir), "pool": str(pool)}


def _record_path(out: Path, to: str) -> Path:
    return out / RECORD if to == "hf" else out.with_name(f".{out.name}{RECORD}")


def _check_target(selection_dir: Path, pool: Path, to: str, out: Path, overwrite: bool) -> None:
    """Refuse an output that would destroy what the export did not write: an input (the selection
    folder, the pool), or an existing path that no earlier export of this kind wrote."""
    check_output_path("--out", out, {"selection folder": selection_dir, "--pool": pool},
                      kind="folder" if to == "hf" else "file")
    if Path.cwd().is_relative_to(out.resolve()):
        raise ConfigError(f"--out {out} is (or holds) the current folder, which an export cannot replace; give a "
                          "new folder such as --out exports/selection-hf")
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise ConfigError(f"--out {out} already exists and holds files; add --overwrite to replace an earlier "
                          "export, or choose a new path")
    record_path = _record_path(out, to)
    record = read_json(record_path) if record_path.is_file() else None
    if not isinstance(record, dict) or record.get("command") != "export" or record.get("to") != to:
        raise ConfigError(f"--out {out} was not written by `export --to {to}` (no {record_path.name} records it); "
                          "--overwrite replaces only an earlier export: choose a new path, or move it away")
    if to == "hf":
        ours = set(record.get("files", [])) | {RECORD}
        others = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                        and str(p.relative_to(out)) not in ours)
        if others:
            raise ConfigError(f"--out {out} holds files an earlier export did not write ({', '.join(others[:3])}"
                              f"{' ...' if len(others) > 3 else ''}); --overwrite replaces only what export wrote: "
                              "move them away, or choose a new path")


def _check_pool(selection_dir, pool, loaded, ids: list[str]) -> list[str]:
    by_id = loaded.by_id()
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ArtifactMismatchError(f"{len(missing)} of the {len(ids)} ids in {selection_dir}/selection.tsv are not "
                                    f"in {pool} (e.g. {missing[:3]}): the selection was made from another pool; "
                                    "pass the pool it was selected from")
    manifest = Path(selection_dir) / "manifest.json"
    recorded = read_json(manifest).get("inputs", {}).get("pool") if manifest.is_file() else None
    if recorded and recorded != loaded.fingerprint:
        return [f"{pool} has changed since the selection was made (its fingerprint differs from the one in "
                f"{manifest}); every selected id is still in it, so the export went ahead"]
    return []


def write_hf(loaded, table: list[tuple[str, float | None]], out: Path, record: dict | None = None) -> list[str]:
    """A ``datasets`` folder of the selection in rank order; returns notes on fields stored as JSON.
    ``record``: what made it, written into the folder with the list of its files (``.export.json``)."""
    by_id = loaded.by_id()
    rows = [{"id": e.id, "task": e.task, "subtask": e.subtask, "messages": e.messages, "rank": rank,
             "score": score} for rank, (i, score) in enumerate(table, start=1) for e in [by_id[i]]]
    extras, as_json = _record_columns([by_id[i].record or {} for i, _ in table])
    columns = {name: [r[name] for r in rows] for name in OWN_COLUMNS}
    columns.update(extras)
    notes = [f"fields {as_json} mix value types across records and are stored as JSON text"] if as_json else []
    info = datasets.DatasetInfo(description=(
        f"Selection exported by instruct_select from {loaded.source} ({len(rows)} examples, rank order). "
        f"Columns {', '.join(OWN_COLUMNS)} are the project's; the rest are the original records' fields"
        + (f"; {', '.join(as_json)} are JSON text." if as_json else ".")))
    dataset = datasets.Dataset.from_dict(columns, info=info)
    with atomic_path(out) as tmp:
        dataset.save_to_disk(str(tmp))
        if record is not None:
            files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
            atomic_write_json(tmp / RECORD, {**record, "files": files})
    return notes


def _record_columns(records: list[dict[str, Any]]) -> tuple[dict[str, list], list[str]]:
    """The original records' fields as columns (not the project's own names); a field Arrow
    cannot type as one column becomes JSON text, so nothing is dropped."""
    names = [n for n in dict.fromkeys(k for r in records for k in r) if n not in OWN_COLUMNS]
    columns, as_json = {}, []
    for name in names:
        values = [r.get(name) for r in records]
        try:
            pa.array(values)
            columns[name] = values
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            columns[name] = [None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in values]
            as_json.append(name)
    return columns, as_json


def write_jsonl(loaded, ids: list[str], out: Path) -> list[str]:
    """The original records as JSON Lines in rank order (messages for an SNI pool)."""
    formats = _formats_of(loaded, ids)
    if "sni" in formats:
        by_id = loaded.by_id()
        write_examples_jsonl([by_id[i] for i in ids], out)
        return ["Super-NaturalInstructions records are not self-contained: the selection is written as messages "
                "({id, task, subtask, messages}) with each task's definition rendered in"]
    if loaded.container == "jsonl":
        write_records(loaded, ids, out)
        return []
    by_id = loaded.by_id()
    lines = [json.dumps(by_id[i].record, ensure_ascii=False, default=str) + "\n" for i in ids]
    atomic_write_text(out, "".join(lines))
    notes = [f"the pool is stored as {loaded.container}; its records are written as JSON lines"]
    if len(formats) > 1:
        notes.append(f"the selected records are in {len(formats)} formats ({', '.join(formats)}), each written in its "
                     "own, so the lines mix formats; `--to hf` gives every row one messages column")
    return notes


def _formats_of(loaded, ids: list[str]) -> list[str]:
    """The formats of the files the selected records come from, in file order."""
    per_file = loaded.file_formats or [loaded.format] * len(loaded.files)
    return list(dict.fromkeys(per_file[loaded.origins[i]] for i in ids)) if per_file else [loaded.format]
