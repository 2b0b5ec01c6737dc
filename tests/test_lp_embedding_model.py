"""Learning percentage's clustering with a local sentence encoder (``learning_percentage.
embedding_model``, the reference's all-MiniLM-L6-v2 setting) instead of the selection model's
hidden states (ours, the default): embedded from the folder with no network, mean-pooled over real
tokens, equal to a one-example-at-a-time reference; a missing or non-model folder is refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import build_tiny_tokenizer
from instruct_select.config import LPSettings, RunConfig
from instruct_select.errors import ConfigError
from instruct_select.features.embeddings import conversation_text
from instruct_select.layout import RunLayout
from instruct_select.run.pipeline import check_config, context_for
from instruct_select.run.producers import produce

ENCODER_HIDDEN = 24  # not the tiny Llama's 32: the vectors show which model embedded


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A tiny BERT sentence encoder and its tokenizer, saved as save_pretrained writes them."""
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("encoder")
    tokenizer = build_tiny_tokenizer(out)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=ENCODER_HIDDEN, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=48, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id)).save_pretrained(str(out))
    return out


@pytest.fixture()
def pool(tmp_path):
    path = tmp_path / "pool.jsonl"
    rows = [{"id": f"e{i}", "messages": [{"role": "user", "content": "What is " + " + ".join(["2"] * (1 + i % 4)) + "?"},
                                         {"role": "assistant", "content": f"It is {2 * (1 + i % 4)}." * (1 + i % 3)}]}
            for i in range(7)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(model, pool, run_dir, embedding_model) -> RunConfig:
    return RunConfig(model=str(model), pool=str(pool), run_dir=str(run_dir), methods=["lp-hard"], budgets=["3"],
                     dtype="float32", device="cpu", finetune=False,
                     learning_percentage=LPSettings(epochs=2, embedding_model=str(embedding_model), max_batch_size=3))


def _reference(encoder_dir, examples) -> np.ndarray:
    """Each example alone (no padding): the mean of the encoder's last hidden states over its tokens."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir))
    model = AutoModel.from_pretrained(str(encoder_dir)).eval()
    with torch.no_grad():
        return np.stack([model(**tokenizer(conversation_text(e), return_tensors="pt")).last_hidden_state[0]
                         .mean(dim=0).numpy() for e in examples])


def test_embedding_model_embeds_the_pool_with_the_local_encoder(tiny_model_dir, encoder_dir, pool, tmp_path):
    config = _config(tiny_model_dir, pool, tmp_path / "run", encoder_dir)
    loaded = check_config(config)
    context = context_for(config, pool=loaded)
    embeddings = produce({"embeddings"}, context, config, RunLayout(config.run_dir))["embeddings"].value
    examples = sorted(loaded.examples, key=lambda e: embeddings.ids.index(e.id))
    assert embeddings.vectors.shape == (7, ENCODER_HIDDEN)
    np.testing.assert_allclose(embeddings.vectors, _reference(encoder_dir, examples), rtol=1e-4, atol=1e-5)
    manifest = json.loads((RunLayout(config.run_dir).selection_model("").embeddings / "manifest.json").read_text())
    assert manifest["settings"]["pooling"] == "mean" and manifest["inputs"]["model"]


def test_default_embeds_with_the_selection_models_hidden_states(tiny_model_dir, pool, tmp_path):
    config = _config(tiny_model_dir, pool, tmp_path / "run", "")
    context = context_for(config, pool=check_config(config))
    embeddings = produce({"embeddings"}, context, config, RunLayout(config.run_dir))["embeddings"].value
    assert embeddings.vectors.shape == (7, 32)  # the tiny Llama's hidden size


def test_missing_or_non_model_embedding_folder_is_refused_before_any_work(tiny_model_dir, pool, tmp_path):
    for folder in (tmp_path / "nope", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        with pytest.raises(ConfigError, match=rf"learning_percentage.embedding_model {folder} is not a local model "
                                              r"folder \(no config.json there\).*nothing is downloaded"):
            check_config(_config(tiny_model_dir, pool, tmp_path / "run", folder))
    assert not (tmp_path / "run").exists()
