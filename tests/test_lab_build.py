"""The lab build end to end at a tiny size: byte-identical files for the same seed, cached reruns,
and models that load back through from_pretrained."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from conftest import tiny_lab_settings
from instruct_select.lab.build import build_lab


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def test_same_seed_gives_byte_identical_lab(tiny_lab, tmp_path):
    again = build_lab(tmp_path / "again", tiny_lab_settings())
    first, second = _files(tiny_lab.root), _files(again.root)
    assert first.keys() == second.keys()
    assert "models/small/model.safetensors" in first and "data/pool.jsonl" in first
    for name in first:
        assert first[name] == second[name], name


def test_rebuild_is_cached_and_other_settings_refused(tiny_lab, caplog):
    with caplog.at_level(logging.INFO, logger="instruct_select"):
        build_lab(tiny_lab.root, tiny_lab_settings())
    assert len(caplog.messages) == 3 and all("reusing" in m for m in caplog.messages)
    other = tiny_lab_settings()
    other.data.pool_size = 300
    with pytest.raises(Exception, match="pool_size: was 240, now 300"):
        build_lab(tiny_lab.root, other)


def test_lab_model_loads_with_from_pretrained(tiny_lab):
    from instruct_select.models.loading import load_base_model, load_tokenizer

    model = load_base_model(tiny_lab.model("small"))
    tokenizer = load_tokenizer(tiny_lab.model("small"))
    assert model.config.vocab_size == len(tokenizer)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|bos|>") and text.endswith("<|assistant|>\n")
