"""Domains of the training mixture and IDEAL's reference set.

An example's domain is, in order: the record's ``domain`` field (or the field the settings name),
else the example's task; a user mapping (label -> domain, inline or a JSON/YAML file, '*' for the
rest) then renames labels, so several source datasets can form one domain. The reference set is
drawn from the target capabilities, by default every validation file, optionally an even seeded
share per task.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

from ..data.example import Example
from ..data.loading import load_test_sets
from ..errors import ConfigError, InputError


def load_domain_map(mapping: dict[str, str] | None = None, path: str | Path | None = None
                    ) -> dict[str, str]:
    """The label -> domain mapping: the inline one, or the one in a JSON or YAML file."""
    if not path:
        return dict(mapping or {})
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"domain map file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in data.items()):
        raise ConfigError(f"{path}: a domain map is a mapping of label to domain, e.g. "
                          '{"gsm8k": "math", "mbpp": "code"}')
    return data


def domain_labels(examples: list[Example], mapping: dict[str, str] | None = None,
                  field: str = "domain") -> dict[str, str]:
    """{example id: domain}; every example must get one, every label must be mapped."""
    mapping = mapping or {}
    labels: dict[str, str] = {}
    unlabelled = []
    for example in examples:
        record = example.record or {}
        label = record.get(field) if record.get(field) is not None else example.task
        if label is None:
            unlabelled.append(example.id)
        else:
            labels[example.id] = str(label)
    if unlabelled:
        raise InputError(f"{len(unlabelled)} example(s) have no domain (e.g. {unlabelled[:3]}): give "
                         f"each record a task or '{field}' field, or load a folder with one file per "
                         "domain")
    if not mapping:
        return labels
    unmapped = sorted({label for label in labels.values() if label not in mapping}) if "*" not in mapping else []
    if unmapped:
        raise ConfigError(f"domain_map has no entry for label(s) {unmapped[:10]}; add them, or a '*' "
                          "entry for the rest")
    return {i: mapping.get(label, mapping.get("*", label)) for i, label in labels.items()}


def group_by_domain(domain_of: dict[str, str]) -> dict[str, list[str]]:
    """{domain: its ids, sorted}: sorted so resampling depends on the ids, not the file order."""
    groups: dict[str, list[str]] = {}
    for id_, domain in domain_of.items():
        groups.setdefault(domain, []).append(id_)
    if len(groups) < 2:
        raise ConfigError(f"the mixture has {len(groups)} domain(s) ({sorted(groups)}); IDEAL balances "
                          "two or more: label the examples (task or domain field) or give domain_map")
    return {d: sorted(ids) for d, ids in sorted(groups.items())}


def reference_examples(path: str | Path, tasks: list[str] | tuple[str, ...] = (), size: int = 0,
                       seed: int = 0) -> list[Example]:
    """The reference set: the chosen tasks of ``path`` (one file per task, or a task field), at most
    ``size`` examples in an even share per task (the first tasks in sorted order take the
    remainder), drawn with ``seed``."""
    sets = load_test_sets(path)
    if tasks:
        unknown = sorted(set(tasks) - set(sets))
        if unknown:
            raise ConfigError(f"reference_tasks {unknown} are not in {path}; it holds {sorted(sets)}")
        sets = {t: sets[t] for t in tasks}
    names = sorted(sets)
    if size and size < len(names):
        raise ConfigError(f"reference_size {size} is smaller than the {len(names)} target tasks; "
                          "raise it so that each task keeps at least one example")
    chosen: list[Example] = []
    for position, name in enumerate(names):
        examples = sorted(sets[name], key=lambda e: e.id)
        if size:
            share = size // len(names) + (position < size % len(names))
            if share < len(examples):
                examples = sorted(random.Random(f"{seed}:{name}").sample(examples, share),
                                  key=lambda e: e.id)
        chosen.extend(examples)
    return chosen
