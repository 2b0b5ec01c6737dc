"""What several commands share: the chat-template setting, the command's run context, warnings."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError


def warn(messages: list[str]) -> None:
    """Each message on stderr as ``warning: ...``."""
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)


def resolve_chat_template(value: str | None, where: str = "--chat-template") -> str | None:
    """What a chat-template setting means: None or 'plain' as they are, Jinja text as it is, a file
    path read; a template Jinja cannot parse, or a path that is not there, is refused by name."""
    if not value or value == "plain":
        return value or None
    inline = "{{" in value or "{%" in value
    path = Path(value).expanduser()
    if not inline:
        if path.is_dir():
            raise ConfigError(f"{where} {value} is a folder; give 'plain', a Jinja template, or a template file")
        if not path.is_file():
            raise ConfigError(f"{where} {value!r} is neither 'plain', a Jinja template ({{% ... %}}) nor an existing "
                              "file; check the path")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{where} {value} is not a text file (not UTF-8); give a Jinja template file") from None
    else:
        text = value
    from jinja2 import TemplateError
    from transformers.utils.chat_template_utils import _compile_jinja_template

    try:
        _compile_jinja_template(text)
    except TemplateError as err:
        line = f" line {err.lineno}" if getattr(err, "lineno", None) else ""
        source = f"{value}" if not inline else "the template given"
        raise ConfigError(f"{where} {source}:{line} Jinja cannot parse it ({err.message or err}); fix the "
                          "template") from None
    return text


def command_context(args, pool=None, **settings):
    """The command's RunContext: its device checked, and its pool (a path) loaded once with the
    command's --format, --skip-invalid, --id-field and --columns."""
    from ..data.loading import load_examples
    from ..run.context import RunContext

    if settings.get("device"):
        from ..models.loading import resolve_device

        resolve_device(settings["device"])
    if pool is not None and str(pool):
        pool = load_examples(pool, format=getattr(args, "format", "auto"),
                             skip_invalid=getattr(args, "skip_invalid", False),
                             id_field=getattr(args, "id_field", None) or None, columns=getattr(args, "columns", None) or None)
    return RunContext.create(pool=pool, **settings)
