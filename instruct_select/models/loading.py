"""Loading base models, tokenizers and trained adapters; attaching LoRA.

Everything goes through ``from_pretrained``: a local directory or a hub id. Tests and the lab use
tiny models saved locally, so the same path runs everywhere. No download happens unless the user
names a hub id that is not cached (and the network allows it).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import LoraSettings
from ..data.chat import ensure_chat_template
from ..errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_tokenizer(name_or_path: str | Path, chat_template: str | None = None):
    """A tokenizer with a chat template and a pad token (the end-of-sequence token if it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    except OSError as err:
        raise ConfigError(f"cannot load a tokenizer from {name_or_path!r}: {err}") from None
    ensure_chat_template(tokenizer, chat_template)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(name_or_path: str | Path, dtype: str = "float32", device: str | None = None):
    """The base causal LM, in ``dtype``, on ``device`` (auto: CUDA when available)."""
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    _check_causal(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=DTYPES[dtype])
    except OSError as err:
        raise ConfigError(f"cannot load a model from {name_or_path!r}: {err}") from None
    except ValueError as err:
        if "Unrecognized configuration class" not in str(err):
            raise
        raise ConfigError(f"{name_or_path}: not a causal language model (AutoModelForCausalLM cannot load this "
                          f"configuration); {CAUSAL_HINT}") from None
    return model.to(resolve_device(device))


CAUSAL_HINT = "give the folder or hub id of a causal LM such as a Llama, Qwen or SmolLM"
CAUSAL_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")


def _check_causal(name_or_path: str | Path) -> None:
    """Refuse a local checkpoint saved as another kind of model (an encoder, a classifier):
    AutoModelForCausalLM would load its body under a freshly initialised, random LM head."""
    import json

    config = Path(name_or_path) / "config.json"
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return  # not a local folder with a readable config: from_pretrained says what is wrong
    if architectures and not any(a.endswith(CAUSAL_ARCHITECTURES) for a in architectures):
        raise ConfigError(f"{name_or_path}: holds a {', '.join(architectures)}, not a causal language model; "
                          f"{CAUSAL_HINT}")


def add_lora(model, settings: LoraSettings):
    """Wrap ``model`` with fresh LoRA adapters; only the adapter weights stay trainable."""
    from peft import LoraConfig, get_peft_model

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
    model_dir = Path(model_dir)
    if (model_dir / "adapter_config.json").is_file():
        from peft import PeftConfig, PeftModel

        base = base or PeftConfig.from_pretrained(str(model_dir)).base_model_name_or_path
        model = load_base_model(base, dtype, device)
        return PeftModel.from_pretrained(model, str(model_dir), is_trainable=trainable)
    return load_base_model(model_dir, dtype, device)


def trainable_named_parameters(model) -> list[tuple[str, torch.nn.Parameter]]:
    """The trainable parameters with their names, in model order (the key for Adam moments)."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]
