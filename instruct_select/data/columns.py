"""A column mapping for pools whose fields have other names: ``--columns prompt=question,response=reply``.

The keys are LLaMA-Factory's (its ``dataset_info.json`` "columns"), so a mapping written for it
works here as it is:

  prompt    the instruction (user turn)            query     extra input, appended to the prompt
  response  the answer (assistant turn)            system    a system prompt
  history   earlier turns: a list of [user, assistant] pairs, before the prompt
  messages  a list of turns, {"role", "content"} or ShareGPT's {"from", "value"}; instead of
            prompt/response, and then only ``system`` may go with it

The value of each key is the name of a field in the records. The records themselves are kept as
they are (a selection is written back with the user's own field names).
"""
from __future__ import annotations

from typing import Any, Mapping

from instruct_select.data.formats import SHAREGPT_ROLES, RecordError

COLUMN_KEYS = ("prompt", "query", "response", "history", "messages", "system")
EXAMPLE = "--columns prompt=instruction,query=input,response=output"


def parse_columns(text: str | Mapping[str, str] | None) -> dict[str, str] | None:
    """``"prompt=q,response=a"`` (or a dict, from a config) -> a checked mapping; None or "" -> None."""
    if not text:
        return None
    if isinstance(text, Mapping):
        pairs = [(str(k), v) for k, v in text.items()]
    else:
        pairs = []
        for item in (part.strip() for part in text.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise RecordError(f"--columns: '{item}' is not KEY=FIELD. Write e.g. {EXAMPLE}.")
            pairs.append((key.strip(), value.strip()))
    mapping: dict[str, str] = {}
    for key, value in pairs:
        if key not in COLUMN_KEYS:
            raise RecordError(f"--columns: unknown key '{key}'; the keys are {', '.join(COLUMN_KEYS)} "
                              f"(LLaMA-Factory's). Write e.g. {EXAMPLE}.")
        if not isinstance(value, str) or not value:
            raise RecordError(f"--columns: '{key}' needs a field name, e.g. {key}=my_field.")
        if key in mapping:
            raise RecordError(f"--columns: '{key}' is given twice; give each key once.")
        mapping[key] = value
    if "messages" in mapping:
        extra = sorted(set(mapping) - {"messages", "system"})
        if extra:
            raise RecordError(f"--columns: messages= holds the whole conversation, so {extra} cannot "
                              "go with it; give messages (and system), or prompt and response.")
    elif not {"prompt", "response"} <= set(mapping):
        raise RecordError(f"--columns: name where the conversation is: prompt= and response= (e.g. "
                          f"{EXAMPLE}), or messages=FIELD.")
    return mapping


def columns_to_messages(record: Mapping[str, Any], mapping: Mapping[str, str]) -> list[dict[str, Any]]:
    """The record's conversation under ``mapping``; formats.check_messages checks the texts."""
    head = []
    if "system" in mapping and record.get(mapping["system"]) not in (None, ""):
        head.append({"role": "system", "content": record[mapping["system"]]})
    if "messages" in mapping:
        return head + _turns(_get(record, mapping, "messages"), mapping["messages"])
    history = record.get(mapping["history"]) if "history" in mapping else None
    for i, pair in enumerate(history or []):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise RecordError(f"field '{mapping['history']}'[{i}] is {type(pair).__name__}, expected a "
                              "[user, assistant] pair (history=, as LLaMA-Factory's alpaca format).")
        head += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    prompt = _get(record, mapping, "prompt")
    query = record.get(mapping["query"]) if "query" in mapping else None
    if query is not None and not isinstance(query, str):
        raise RecordError(f"field '{mapping['query']}' (query=) is {type(query).__name__}, expected a string.")
    if isinstance(prompt, str) and query and query.strip():
        prompt = prompt + "\n\n" + query
    return head + [{"role": "user", "content": prompt},
                   {"role": "assistant", "content": _get(record, mapping, "response")}]


def _get(record: Mapping[str, Any], mapping: Mapping[str, str], key: str) -> Any:
    name = mapping[key]
    if name not in record:
        raise RecordError(f"missing field '{name}' (named by --columns {key}={name}); the record has "
                          f"{sorted(record)}. Fix the mapping, or drop the record.")
    if record[name] is None:
        raise RecordError(f"field '{name}' (--columns {key}=) is null; give it a value, or drop the record.")
    return record[name]


def _turns(turns: Any, name: str) -> list[dict[str, Any]]:
    """Role/content turns, or ShareGPT's from/value turns with the roles mapped."""
    if not isinstance(turns, list) or not turns:
        raise RecordError(f"field '{name}' (--columns messages=) is {type(turns).__name__}, expected "
                          "a non-empty list of turns.")
    out = []
    for i, turn in enumerate(turns):
        if isinstance(turn, dict) and "role" in turn and "content" in turn:
            out.append({"role": turn["role"], "content": turn["content"]})
        elif isinstance(turn, dict) and "from" in turn and "value" in turn:
            out.append({"role": SHAREGPT_ROLES.get(turn["from"], turn["from"]), "content": turn["value"]})
        else:
            raise RecordError(f"{name}[{i}] is not a turn: expected {{'role', 'content'}} or "
                              "{'from', 'value'}.")
    return out
