"""Loading base models, tokenizers and trained adapters; attaching LoRA.

Everything goes through ``from_pretrained``: a local directory or a hub id. Tests and the lab use
tiny models saved locally, so the same path runs everywhere. No download happens unless the user
names a hub id that is not cached (and the network allows it).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..config import MODEL_DTYPES, LoraSettings
from ..data.chat import ensure_chat_template
from ..errors import ConfigError
from ..layout import TrainFolders

# Weight dtypes. "bfloat16-autocast" keeps float32 weights and runs the model body's matrix products in
# bfloat16 under torch.autocast (measured against bfloat16 weights in benchmarks/cpu_dtype.py);
# "auto" is resolved per device by ``resolve_dtype`` before anything loads.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
AUTOCAST = "bfloat16-autocast"
# The attribute that marks a model body run under autocast, holding the autocast dtype.
AUTOCAST_MARK = "instruct_select_autocast"


DEVICE_HINT = "use cpu, cuda, cuda:N or auto"
# Files one of which every saved tokenizer folder holds.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model",
                   "vocab.txt")


def resolve_device(device: str | None = None) -> torch.device:
    """``device`` as torch's, refusing by name a device this machine's torch cannot use."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a device; {DEVICE_HINT}") from None
    if resolved.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            raise ConfigError(f"device {device!r}: this torch ({torch.__version__}) is a CPU-only build; use cpu "
                              "(or install the torch build for your CUDA version)")
        count = torch.cuda.device_count()
        if count == 0 or (resolved.index or 0) >= count:
            raise ConfigError(f"device {device!r}: this machine shows {count} CUDA device(s); use cpu, or cuda:N "
                              "with N below the count")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: MPS is not available on this machine; use cpu")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {device!r} is not supported here; {DEVICE_HINT}")
    return resolved


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX), as torch reports it,
    else as /proc/cpuinfo's flags say."""
    cpu = getattr(torch, "cpu", None)
    probes = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(probe) for probe in probes):
        return any(probe() for probe in probes)
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, device: str | None = None) -> str:
    """``dtype`` with "auto" made concrete for ``device``: bfloat16 weights on a CUDA device that
    supports them and on a CPU with AVX512-BF16 or AMX, float32 elsewhere. On the CPU, bfloat16
    weights beat bfloat16 autocast over float32 weights in every stage measured (docs/RESULTS.md,
    "bfloat16 on the CPU": features 1.64× float32 against 1.30×, the loss pass 1.82× against
    1.56×, warmup 1.46× against 1.38×); autocast stays a choice."""
    if dtype not in MODEL_DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(MODEL_DTYPES)}, got {dtype!r}")
    if dtype != "auto":
        return dtype
    target = resolve_device(device)
    if target.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if target.type == "cpu" and cpu_has_fast_bfloat16():
        return "bfloat16"
    return "float32"


def autocast_body(model, dtype: torch.dtype = torch.bfloat16) -> None:
    """Run ``model``'s body (the decoder stack: embeddings, attention, MLPs, final norm) under
    ``torch.autocast`` from now on, whoever calls it: training, gradient features, loss passes,
    hidden states and ``generate``. Weights stay float32, and so do LoRA's weights and gradients;
    the output head stays outside, so logits and losses are computed in float32."""
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if not isinstance(body, torch.nn.Module):
        raise ConfigError(f"dtype {AUTOCAST}: {type(model).__name__} has no model body to run under autocast; "
                          "use bfloat16 or float32")
    entered: list = []

    def enter(module, args):
        device = next(module.parameters()).device.type
        entered.append(torch.autocast(device, dtype=dtype))
        entered[-1].__enter__()

    def leave(module, args, output):
        entered.pop().__exit__(None, None, None)

    body.register_forward_pre_hook(enter)
    body.register_forward_hook(leave, always_call=True)  # left even when the forward raises
    setattr(body, AUTOCAST_MARK, dtype)


@contextmanager
def autocast_weights_cast_once(model) -> Iterator[None]:
    """For the duration (a pass without gradients: generation), the float32 linear weights of
    ``model``'s autocast bodies hold the bfloat16 copies autocast would make at every forward, and
    their own tensors again afterwards.

    autocast casts every weight anew at each forward. A decoding step is a forward of one token, for
    which that cast costs more than the step; cast once, the products are the same (autocast rounds
    the same float32 values to the same bfloat16 ones), bit for bit."""
    saved = []
    for body in model.modules():
        dtype = getattr(body, AUTOCAST_MARK, None)
        if dtype is None:
            continue
        for module in body.modules():
            weight = getattr(module, "weight", None)
            if isinstance(module, torch.nn.Linear) and weight.dtype == torch.float32:
                saved.append((weight, weight.data))
                weight.data = weight.data.to(dtype)
    try:
        yield
    finally:
        for weight, data in saved:
            weight.data = data


def local_path(name_or_path: str | Path, what: str) -> Path | None:
    """The local folder ``name_or_path`` names, or None for a hub id (``org/name``).

    A path that does not exist but looks local (starts with ./, ../, / or ~, has more than one
    separator, or its first part is an existing folder) is refused as a missing folder: tried as a
    hub id it would cost a minute of retries and end in a connection error."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path
    parts = Path(text).parts
    local = (text.startswith(("./", "../", "/", "~", ".\\", "..\\")) or text in (".", "..")
             or (os.sep != "/" and os.sep in text) or len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir()))
    if local:
        raise ConfigError(f"{what} folder {text} does not exist; check the path (a hub id looks like org/name)")
    return None


def check_model_path(name_or_path: str | Path, what: str = "model") -> None:
    """Refuse, without loading anything, a local path that cannot hold a model: a missing folder, a
    file, a folder without config.json (naming what it holds instead: a tokenizer, the output
    folder of ``train`` whose model is in model/), a config of another kind than a causal LM. A hub
    id is left to ``from_pretrained``."""
    path = local_path(name_or_path, what)
    if path is None or (path / "adapter_config.json").is_file():
        return
    if (path / "config.json").is_file():
        _check_causal(path)
        return
    if not path.is_dir():
        raise ConfigError(f"{what} {name_or_path} is a file; give the model's folder (config.json and weights) "
                          "or a hub id")
    _refuse_output_root(path, what)
    holds = ("a tokenizer but no model" if _has_tokenizer(path) else
             f"{_listing(path)}, not a saved model")
    raise ConfigError(f"{what} folder {name_or_path} holds {holds} (no config.json); give the folder of a saved "
                      "model (config.json and weights) or a hub id")


def check_tokenizer_path(name_or_path: str | Path, what: str = "tokenizer") -> None:
    """As ``check_model_path``, for a tokenizer: a local folder must hold tokenizer files."""
    path = local_path(name_or_path, what)
    if path is None or (path.is_dir() and _has_tokenizer(path)):
        return
    if not path.is_dir():
        raise ConfigError(f"{what} {name_or_path} is a file; give the tokenizer's folder or a hub id")
    _refuse_output_root(path, what)
    raise ConfigError(f"{what} folder {name_or_path} holds {_listing(path)}, not a tokenizer (none of "
                      f"{', '.join(TOKENIZER_FILES)}); give the folder of a saved tokenizer or model, or a hub id")


def check_model_source(name_or_path: str | Path, what: str = "model") -> None:
    """A folder (or hub id) a run loads both its model and its tokenizer from: both checks."""
    check_model_path(name_or_path, what)
    check_tokenizer_path(name_or_path, what)


def _refuse_output_root(path: Path, what: str) -> None:
    """The output folder of ``train`` (manifest.json, model/, checkpoints/): name its model/."""
    inner = TrainFolders(path).model
    if (inner / "config.json").is_file() or (inner / "adapter_config.json").is_file():
        raise ConfigError(f"{what} folder {path} is the output folder of a training run; give its model folder: "
                          f"{inner}")


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def _listing(path: Path) -> str:
    names = sorted(p.name for p in path.iterdir())
    return "nothing" if not names else ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def load_tokenizer(name_or_path: str | Path, chat_template: str | None = None):
    """A tokenizer with a chat template and a pad token (the end-of-sequence token if it has none)."""
    check_tokenizer_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load a tokenizer from {name_or_path}: {_first_line(err)}") from None
    ensure_chat_template(tokenizer, chat_template)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(name_or_path: str | Path, dtype: str = "float32", device: str | None = None):
    """The base causal LM, in ``dtype`` (see ``MODEL_DTYPES``; auto: ``resolve_dtype``), on
    ``device`` (auto: CUDA when available)."""
    dtype = resolve_dtype(dtype, device)
    target = resolve_device(device)
    check_model_path(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=DTYPES.get(dtype, torch.float32))
    except OSError as err:
        raise ConfigError(f"cannot load a model from {name_or_path}: {_first_line(err)}") from None
    except ValueError as err:
        if "Unrecognized configuration class" not in str(err):
            raise
        raise ConfigError(f"{name_or_path}: not a causal language model (AutoModelForCausalLM cannot load this "
                          f"configuration); {CAUSAL_HINT}") from None
    if dtype == AUTOCAST:
        autocast_body(model)
    return model.to(target)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


CAUSAL_HINT = "give the folder or hub id of a causal LM such as a Llama, Qwen or SmolLM"
CAUSAL_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")


def _check_causal(name_or_path: str | Path) -> None:
    """Refuse a local checkpoint saved as another kind of model (an encoder, a classifier):
    AutoModelForCausalLM would load its body under a freshly initialised, random LM head."""
    config = Path(name_or_path) / "config.json"
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return  # not a local folder with a readable config: from_pretrained says what is wrong
    if architectures and not any(a.endswith(CAUSAL_ARCHITECTURES) for a in architectures):
        raise ConfigError(f"{name_or_path}: holds a {', '.join(architectures)}, not a causal language model; "
                          f"{CAUSAL_HINT}")


def add_lora(model, settings: LoraSettings):
    """Wrap ``model`` with fresh LoRA adapters; only the adapter weights stay trainable."""
    from peft import LoraConfig, get_peft_model  # peft: ~2.5 s more than transformers; only LoRA needs it

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in settings.target_modules if m not in present]
    if missing:
        raise ConfigError(
            f"lora.target_modules {missing} are not modules of this model; "
            f"linear layers it has include: {sorted(_linear_names(model))}"
        )
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _linear_names(model) -> set[str]:
    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def load_trained(model_dir: str | Path, base: str | Path | None = None, dtype: str = "float32",
                 device: str | None = None, trainable: bool = False):
    """Load what ``train`` wrote: a LoRA adapter over its base model, or a full model."""
    check_model_path(model_dir)
    model_dir = Path(model_dir)
    if (model_dir / "adapter_config.json").is_file():
        from peft import PeftModel  # peft: ~2.5 s more than transformers; only an adapter needs it

        recorded = adapter_base(model_dir)
        base = str(base or recorded or "")
        if not base:
            raise ConfigError(f"adapter {model_dir} does not record its base model; give it with --base")
        model = load_base_model(base, dtype, device)
        try:
            return PeftModel.from_pretrained(model, str(model_dir), is_trainable=trainable)
        except RuntimeError as err:
            if "size mismatch" not in str(err):
                raise
            hint = (f"it was trained on {recorded}: drop --base, or give --base {recorded}" if recorded and
                    recorded != base else "give the base model it was trained on with --base")
            raise ConfigError(f"adapter {model_dir} does not fit base model {base} (its weight shapes differ); "
                              f"{hint}") from None
    return load_base_model(model_dir, dtype, device)


def adapter_base(model_dir: str | Path) -> str | None:
    """The base model an adapter was trained on: its training manifest's record, else peft's."""
    model_dir = Path(model_dir)
    for record, keys in ((model_dir.parent / "manifest.json", ("outputs", "base_model")),
                         (model_dir / "adapter_config.json", ("base_model_name_or_path",))):
        try:
            value = json.loads(record.read_text(encoding="utf-8"))
            for key in keys:
                value = value[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if value:
            return str(value)
    return None


def trainable_named_parameters(model) -> list[tuple[str, torch.nn.Parameter]]:
    """The trainable parameters with their names, in model order (the key for Adam moments)."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]
