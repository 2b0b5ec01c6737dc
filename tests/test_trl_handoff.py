"""The hand-off to TRL: an exported selection trains with TRL's SFTTrainer, and TRL's assistant-only
loss mask is this project's response mask, token for token (docs/HANDOFF.md).

TRL is in the dev extra: ``pip install --dry-run trl`` (TRL 1.16.0) keeps the CPU torch 2.13.0 and
pulls no CUDA package (it installs trl alone; accelerate, datasets and transformers are already
here), so scripts/test.sh installs it and this test runs; it skips, saying so, where TRL is absent.
"""
from __future__ import annotations

import math

import pytest

from instruct_select.cli import main
from instruct_select.data.chat import IGNORE_INDEX, tokenize_example
from instruct_select.data.example import Example
from instruct_select.lab.tokenizer import CHAT_TEMPLATE
from instruct_select.models.loading import load_tokenizer

trl = pytest.importorskip("trl", reason="TRL is not installed: pip install -e '.[dev]' (or pip install trl) "
                                        "installs it beside the CPU torch")

# The lab's chat template with TRL's {% generation %} markers around what this project trains on:
# the text after the generation prompt, up to and including the end of the assistant's turn. It
# renders exactly the text CHAT_TEMPLATE renders (checked below).
MARKED_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['role'] == 'assistant' %}{% generation %} {{ m['content'] }}<|end|>\n{% endgeneration %}"
    "{% else %} {{ m['content'] }}<|end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
MAX_LENGTH = 512


def _export(tiny_lab, tmp_path) -> str:
    """A random selection of the lab pool, exported as a datasets folder (what a TRL user loads)."""
    selection, out = tmp_path / "sel", tmp_path / "hf"
    assert main(["--quiet", "select", "--pool", str(tiny_lab.pool), "--budget", "8", "--out", str(selection)]) == 0
    assert main(["--quiet", "export", str(selection), "--pool", str(tiny_lab.pool), "--to", "hf",
                 "--out", str(out)]) == 0
    return str(out)


def test_trl_trains_on_an_export_with_this_projects_masks(tiny_lab, tmp_path):
    from datasets import load_from_disk
    from trl import SFTConfig, SFTTrainer

    dataset = load_from_disk(_export(tiny_lab, tmp_path))
    ours = load_tokenizer(tiny_lab.model("small"))  # the lab template, as this project trains
    theirs = load_tokenizer(tiny_lab.model("small"), MARKED_TEMPLATE)
    examples = [Example(row["id"], row["task"], row["messages"]) for row in dataset]
    for example in examples:  # the marked template renders the very same text
        assert (theirs.apply_chat_template(example.messages, tokenize=False)
                == ours.apply_chat_template(example.messages, tokenize=False))
    assert ours.chat_template == CHAT_TEMPLATE

    config = SFTConfig(output_dir=str(tmp_path / "trl"), assistant_only_loss=True, max_length=MAX_LENGTH,
                       max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3, use_cpu=True,
                       report_to="none", save_strategy="no", logging_steps=1, seed=0, dataloader_num_workers=0)
    trainer = SFTTrainer(model=str(tiny_lab.model("small")), args=config, processing_class=theirs,
                         train_dataset=dataset.select_columns(["messages"]))
    result = trainer.train()
    assert trainer.state.global_step == 2 and math.isfinite(result.training_loss)

    # TRL's labels: the token where its assistant mask is set, -100 elsewhere; ours: the same rule.
    prepared = trainer.train_dataset
    assert len(prepared) == len(examples)
    for example, row in zip(examples, prepared):
        mine = tokenize_example(ours, example, MAX_LENGTH)
        assert list(row["input_ids"]) == list(mine.input_ids), example.id
        assert list(row["labels"]) == list(mine.labels), example.id
        assert any(t != IGNORE_INDEX for t in row["labels"])
