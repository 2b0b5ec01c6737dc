"""The lab's tokenizer: a small byte-level BPE trained locally, saved as a transformers tokenizer.

Byte level with no normaliser, so ``decode(encode(text)) == text`` for any text; digits are split
one per token before BPE, so numbers are spelt digit by digit and arithmetic has a regular shape.
The special tokens frame a chat: ``<|bos|>`` starts a conversation, each turn is
``<|role|>\\n content<|end|>\\n`` (one space before the content), and ``<|end|>`` is the eos
token, so greedy generation stops at the end of the assistant's turn. The tokenizer adds no
special tokens by itself (no post-processor): the chat template writes ``<|bos|>``, and
pretraining frames every document as ``<|bos|> text <|end|>``.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from instruct_select.data.example import Example
from instruct_select.errors import ConfigError

BOS, END, PAD = "<|bos|>", "<|end|>", "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (BOS, END, PAD, *ROLE_TOKENS)

# Rendering messages[:i] with add_generation_prompt=True is a prefix of rendering messages[:i+1]
# when message i is the assistant's, so a prompt rendered for generation lines up with training.
#
# Each content follows one space, as a word follows one in the corpus: byte-level BPE spells
# " Velkar" and "Velkar" with different tokens, and the base model learnt its facts and sums in the
# spaced form ("... lives in Velkar."), so an answer written that way is one it already knows.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n {{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_bpe(texts: Iterable[str], vocab_size: int = 1024) -> Tokenizer:
    """Train the raw ``tokenizers`` BPE on ``texts`` (deterministic for the same texts)."""
    least = len(pre_tokenizers.ByteLevel.alphabet()) + len(SPECIAL_TOKENS)
    if vocab_size < least:
        raise ConfigError(f"vocab_size={vocab_size} must be at least {least} "
                          "(256 bytes plus the special tokens)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        special_tokens=list(SPECIAL_TOKENS),
        # Every byte in the vocabulary from the start: no text is ever out of vocabulary.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def message_texts(examples: Iterable[Example]) -> Iterator[str]:
    """The message contents of ``examples``, for training the tokenizer on the pool's wording."""
    for example in examples:
        for message in example.messages:
            yield message["content"]


def train_lab_tokenizer(documents: Sequence[str], pool_texts: Iterable[str],
                        vocab_size: int = 1024, out_dir: Path | None = None):
    """A ``PreTrainedTokenizerFast`` trained on the corpus and the pool texts.

    Saved with ``save_pretrained`` into ``out_dir`` when given; load it back with
    ``AutoTokenizer.from_pretrained(out_dir)``.
    """
    texts = [*documents, *pool_texts]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_bpe(texts, vocab_size),
        bos_token=BOS, eos_token=END, pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        model_max_length=2048,
        padding_side="right",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer
