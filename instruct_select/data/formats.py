"""Turn raw records into role/content messages: one converter per input format, auto-detection,
and the checks every example must pass.

Formats (what one record looks like):
  messages           {"messages": [{"role", "content"}]} (also under "conversations"/"conversation")
  sharegpt           {"conversations": [{"from", "value"}]}
  alpaca             {"instruction", "input" (optional), "output"} ("response" or "answer" also
                     stand for "output", as GPTeacher and other Alpaca-like sets name it)
  prompt_completion  {"prompt", "completion" | "response"} (strings, or lists of messages)
  input_target       {"input", "target"}                 (BIG-Bench Hard)
  question_answer    {"question", "answer"}              (GSM8K)
  sni                a Super-NaturalInstructions task file: {"Definition", "Positive Examples",
                     "Instances": [{"id", "input", "output": [...]}]}; one example per instance

A pool whose fields have other names is read through a column mapping (``columns.py``).

Problems with one record raise ``RecordError`` with what is wrong and what to do; the loader adds
the record's location, and either raises ``InputError`` or, with skip_invalid, counts the skip.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from instruct_select.data.example import ROLES

FORMAT_SHAPES = {
    "messages": '{"messages": [{"role", "content"}]}',
    "sharegpt": '{"conversations": [{"from", "value"}]}',
    "alpaca": '{"instruction", "input" (optional), "output"}',
    "prompt_completion": '{"prompt", "completion" or "response"}',
    "input_target": '{"input", "target"}',
    "question_answer": '{"question", "answer"}',
    "sni": 'a task file {"Definition", "Instances": [{"id", "input", "output"}]}',
}
FORMATS = tuple(FORMAT_SHAPES)
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "system": "system"}
MESSAGE_KEYS = ("messages", "conversations", "conversation")
ALPACA_OUTPUTS = ("output", "response", "answer")  # the first one present is the response


class RecordError(ValueError):
    """One record is unusable; the message says what is wrong and what to do."""


def detect_format(record: Mapping[str, Any], document: Mapping[str, Any] | None) -> str | None:
    """The format a record (and the JSON object around it, if any) looks like, or None."""
    if document is not None and "Definition" in document and "Instances" in document:
        return "sni"
    for key in MESSAGE_KEYS:
        turns = record.get(key)
        if isinstance(turns, list) and turns and isinstance(turns[0], dict):
            if "role" in turns[0]:
                return "messages"
            if "from" in turns[0]:
                return "sharegpt"
    if "messages" in record:
        # A "messages" field that is not a list of turns: treat it as that format, so the
        # conversion reports what is wrong with it instead of "cannot tell the format".
        return "messages"
    keys = set(record)
    if "instruction" in keys and keys & set(ALPACA_OUTPUTS):
        return "alpaca"
    for fmt, needed in (("input_target", {"input", "target"}),
                        ("question_answer", {"question", "answer"})):
        if needed <= keys:
            return fmt
    if "prompt" in keys and keys & {"completion", "response"}:
        return "prompt_completion"
    return None


def unknown_format_message(keys: list[str]) -> str:
    shapes = "; ".join(f"{name} {shape}" for name, shape in FORMAT_SHAPES.items())
    return (f"cannot tell the format from the first record's keys {sorted(keys)}. Known formats: "
            f"{shapes}. Map your fields with --columns (e.g. --columns prompt=question,"
            f"response=reply), or name the format with --format NAME.")


def check_format_name(fmt: str) -> None:
    if fmt not in FORMAT_SHAPES:
        raise RecordError(f"unknown format '{fmt}'; known formats: {', '.join(FORMATS)}, or "
                          "'auto' to detect it.")


def check_sni_document(document: Mapping[str, Any] | None, n_demos: int) -> None:
    """File-level checks for a Super-NaturalInstructions task file."""
    if document is None or "Definition" not in document:
        raise RecordError('not a Super-NaturalInstructions task file: it needs an object with '
                          '"Definition" and "Instances".')
    _definition(document)
    positives = document.get("Positive Examples") or []
    if n_demos > len(positives):
        raise RecordError(f"n_demos={n_demos} asks for more demonstrations than the "
                          f"{len(positives)} Positive Examples in the file; lower n_demos.")


def to_messages(fmt: str, record: Mapping[str, Any], document: Mapping[str, Any] | None = None,
                n_demos: int = 0) -> list[dict[str, str]]:
    """The record's conversation as checked role/content messages."""
    if fmt == "sni":
        messages = _sni(record, document or {}, n_demos)
    else:
        messages = _CONVERTERS[fmt](record)
    check_messages(messages)
    return messages


def check_messages(messages: list[dict[str, str]]) -> None:
    """Every turn has a known role and non-empty text; at least one assistant turn; the user speaks
    first (after any system turns): an assistant turn has no prompt to answer."""
    for i, turn in enumerate(messages, start=1):
        if turn["role"] not in ROLES:
            hint = SHAREGPT_ROLES.get(turn["role"]) if isinstance(turn["role"], str) else None
            raise RecordError(f"message {i} has unknown role {turn['role']!r}; allowed roles: "
                              f"{', '.join(ROLES)}." + (f" Use {hint!r} instead." if hint else ""))
        _text(turn["content"], f"message {i} ({turn['role']}) content")
    if not any(t["role"] == "assistant" for t in messages):
        raise RecordError("no assistant turn: an example needs at least one assistant message "
                          "to learn from. Add the response, or drop the record.")
    first = next(i for i, t in enumerate(messages, start=1) if t["role"] != "system")
    if messages[first - 1]["role"] == "assistant":
        raise RecordError(f"the conversation starts with an assistant turn (message {first}): it answers no "
                          "prompt. Start with the user's turn (a greeting can go in a system message), or drop "
                          "the record.")


def _messages(record: Mapping[str, Any]) -> list[dict[str, str]]:
    key = next((k for k in MESSAGE_KEYS if k in record), None)
    if key is None:
        raise RecordError(f"missing field 'messages' (messages format needs "
                          f"{FORMAT_SHAPES['messages']}).")
    return _turns(record[key], key, "role", "content", None)


def _sharegpt(record: Mapping[str, Any]) -> list[dict[str, str]]:
    key = next((k for k in ("conversations", "conversation") if k in record), None)
    if key is None:
        raise RecordError(f"missing field 'conversations' (sharegpt format needs "
                          f"{FORMAT_SHAPES['sharegpt']}).")
    return _turns(record[key], key, "from", "value", SHAREGPT_ROLES)


def _turns(turns: Any, key: str, role_key: str, text_key: str,
           role_map: Mapping[str, str] | None) -> list[dict[str, str]]:
    if not isinstance(turns, list):
        raise RecordError(f"field '{key}' is {_type(turns)}, expected a list of "
                          f"{{{role_key!r}, {text_key!r}}} objects.")
    if not turns:
        raise RecordError(f"field '{key}' is an empty list; an example needs a conversation.")
    out = []
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise RecordError(f"{key}[{i - 1}] is {_type(turn)}, expected an object with "
                              f"'{role_key}' and '{text_key}'.")
        role = turn[role_key]
        if role_map is not None:
            if role not in role_map:
                raise RecordError(f"{key}[{i - 1}] has unknown 'from' {role!r}; allowed: "
                                  f"{', '.join(role_map)}.")
            role = role_map[role]
        out.append({"role": role, "content": turn[text_key]})
    return out


def _alpaca(record: Mapping[str, Any]) -> list[dict[str, str]]:
    instruction = _text(_field(record, "instruction", "alpaca"), "field 'instruction'")
    extra = record.get("input")
    if extra is not None and not isinstance(extra, str):
        raise RecordError(f"field 'input' is {_type(extra)}, expected a string (or absent).")
    user = instruction + "\n\n" + extra if extra and extra.strip() else instruction
    key = next((k for k in ALPACA_OUTPUTS if k in record), "output")
    return _pair(user, _text(_field(record, key, "alpaca"), f"field '{key}'"))


def _prompt_completion(record: Mapping[str, Any]) -> list[dict[str, str]]:
    prompt = _field(record, "prompt", "prompt_completion")
    key = "response" if "response" in record and "completion" not in record else "completion"
    completion = _field(record, key, "prompt_completion")
    # TRL's conversational variant holds lists of messages in both fields.
    head = _turns(prompt, "prompt", "role", "content", None) if isinstance(prompt, list) \
        else [{"role": "user", "content": prompt}]
    tail = _turns(completion, key, "role", "content", None) if isinstance(completion, list) \
        else [{"role": "assistant", "content": completion}]
    return head + tail


def _simple(user_key: str, assistant_key: str, fmt: str) -> Callable[[Mapping], list]:
    def convert(record: Mapping[str, Any]) -> list[dict[str, str]]:
        return _pair(_text(_field(record, user_key, fmt), f"field '{user_key}'"),
                     _text(_field(record, assistant_key, fmt), f"field '{assistant_key}'"))
    return convert


def _sni(record: Mapping[str, Any], document: Mapping[str, Any], n_demos: int) -> list[dict]:
    parts = [_definition(document)]
    for i, demo in enumerate((document.get("Positive Examples") or [])[:n_demos], start=1):
        if not isinstance(demo, dict) or not {"input", "output"} <= set(demo):
            raise RecordError(f"Positive Examples[{i - 1}] needs 'input' and 'output'.")
        parts.append(f"Example {i}:\nInput: {demo['input']}\nOutput: {demo['output']}")
    parts.append(_text(_field(record, "input", "sni"), "field 'input'"))
    output = _field(record, "output", "sni")
    if isinstance(output, list):  # SNI lists every acceptable output; train on the first
        if not output:
            raise RecordError("field 'output' is an empty list; it needs at least one answer.")
        output = output[0]
    return _pair("\n\n".join(parts), _text(output, "field 'output'"))


def _definition(document: Mapping[str, Any]) -> str:
    definition = document.get("Definition")
    if isinstance(definition, list) and definition and all(isinstance(d, str) for d in definition):
        definition = "\n".join(definition)
    if not isinstance(definition, str) or not definition.strip():
        raise RecordError(f"'Definition' is {_type(definition)}; expected a non-empty string or "
                          "list of strings.")
    return definition


def _pair(user: Any, assistant: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _field(record: Mapping[str, Any], name: str, fmt: str) -> Any:
    if name not in record:
        raise RecordError(f"missing field '{name}' ({fmt} format needs {FORMAT_SHAPES[fmt]}; "
                          f"the record has {sorted(record)}).")
    if record[name] is None:  # present but null: saying "missing" would send the user looking
        raise RecordError(f"field '{name}' is null; give it a value, or drop the record.")
    return record[name]


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{what} is {_type(value)}, expected a non-empty string.")
    if not value.strip():
        raise RecordError(f"{what} is empty; every turn needs text. Fill it in, or drop the "
                          "record.")
    return value


def _type(value: Any) -> str:
    """A short description of a wrong value: its type and, when short, the value itself."""
    shown = repr(value)
    return f"{type(value).__name__} {shown}" if len(shown) <= 40 else type(value).__name__


_CONVERTERS: dict[str, Callable[[Mapping[str, Any]], list[dict[str, Any]]]] = {
    "messages": _messages,
    "sharegpt": _sharegpt,
    "alpaca": _alpaca,
    "prompt_completion": _prompt_completion,
    "input_target": _simple("input", "target", "input_target"),
    "question_answer": _simple("question", "answer", "question_answer"),
}
