"""Chat rendering that returns tokens and the response-only loss mask together.

The conversation is rendered through the tokenizer's own chat template, then cut into segments at
every assistant turn: the text the template adds up to the generation prompt is context (label
-100), the text from there to the end of the assistant turn (its content and end-of-turn marker) is
response (labelled). Each segment is tokenised on its own, exactly as at inference, where the
prompt is tokenised and the model generates the rest. So exactly the assistant turns carry labels,
in multi-turn conversations too.

Truncation is explicit: examples longer than ``max_length`` are cut on the right and counted; an
example left with no response token is reported and excluded, never trained on silently.
"""
from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError, InputError
from .example import Example

IGNORE_INDEX = -100

# A plain template for base tokenizers that ship none (e.g. Llama-2 base). Prefix-stable.
PLAIN_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### User:\n{{ m['content'] }}\n\n"
    "{% else %}### Assistant:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


@dataclass(slots=True)
class TokenizedExample:
    """Tokens and labels of one rendered example.

    Both are stored as ``array("i")`` (4 bytes a token) whatever sequence they are given as: a
    pool is tokenised whole before it is batched by length, and Python lists of ints cost about
    36 bytes a token, which for a 270K-example pool of 500-token conversations is ~10 GB.
    """

    id: str
    input_ids: Sequence[int]
    labels: Sequence[int]
    truncated: bool = False

    def __post_init__(self) -> None:
        self.input_ids = array("i", self.input_ids)
        self.labels = array("i", self.labels)

    @property
    def n_response_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class RenderReport:
    """What rendering did to a dataset: how many were truncated, which ids were excluded."""

    total: int = 0
    truncated: int = 0
    no_response: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.total} examples rendered, {self.truncated} truncated"
        if self.no_response:
            shown = ", ".join(self.no_response[:5]) + (" ..." if len(self.no_response) > 5 else "")
            text += (
                f"; {len(self.no_response)} excluded: no response token left after truncation "
                f"({shown}); raise max_length to keep them"
            )
        return text


def ensure_chat_template(tokenizer, template: str | None = None) -> None:
    """Use ``template`` ('plain' or a Jinja string), else the tokenizer's own; error if neither."""
    if template == "plain":
        tokenizer.chat_template = PLAIN_TEMPLATE
    elif template:
        tokenizer.chat_template = template
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"the tokenizer in {getattr(tokenizer, 'name_or_path', '')!r} has no chat template; "
            "use a simple one with chat_template: plain in a run config (--chat-template plain for train), "
            "or give a Jinja template"
        )


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )


def segment_conversation(tokenizer, messages: list[dict], example_id: str = "") -> list[tuple[str, bool]]:
    """Split the rendered conversation into (text, is_response) segments, in order."""
    segments: list[tuple[str, bool]] = []
    done = ""  # rendered text covered by the segments so far
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (prompt.startswith(done) and upto.startswith(prompt)):
            raise ConfigError(
                f"example {example_id}: the chat template is not prefix-stable (rendering the "
                f"first {i} messages is not a prefix of rendering {i + 1}), so response tokens "
                "cannot be located; use a template that renders earlier turns unchanged"
            )
        segments.append((prompt[len(done):], False))
        segments.append((upto[len(prompt):], True))
        done = upto
    full = _render(tokenizer, messages, generation_prompt=False)
    if full[len(done):]:
        segments.append((full[len(done):], False))
    return segments


def tokenize_example(tokenizer, example: Example, max_length: int) -> TokenizedExample:
    """Tokens and labels of one example: labels equal the tokens on assistant turns, -100 elsewhere."""
    input_ids: list[int] = []
    labels: list[int] = []
    for text, is_response in segment_conversation(tokenizer, example.messages, example.id):
        if not text:
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids.extend(ids)
        labels.extend(ids if is_response else [IGNORE_INDEX] * len(ids))
    truncated = len(input_ids) > max_length
    return TokenizedExample(example.id, input_ids[:max_length], labels[:max_length], truncated)


def tokenize_examples(
    tokenizer, examples: list[Example], max_length: int
) -> tuple[list[TokenizedExample], RenderReport]:
    """Tokenise a dataset; examples left with no response token are excluded and reported."""
    report = RenderReport(total=len(examples))
    kept = []
    for example in examples:
        item = tokenize_example(tokenizer, example, max_length)
        report.truncated += item.truncated
        if item.n_response_tokens == 0:
            report.no_response.append(example.id)
        else:
            kept.append(item)
    if not kept and examples:
        raise InputError(
            f"none of the {len(examples)} examples has a response token after truncation to "
            f"{max_length} tokens; raise max_length"
        )
    return kept, report
