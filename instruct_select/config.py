"""Typed settings: one dataclass per stage, checked on construction; YAML files plus key=value overrides.

Settings are plain dataclasses with help text in ``field(metadata={"help": ...})``. ``from_dict``
builds them from nested dicts (YAML), rejecting unknown keys by name; ``apply_overrides`` applies
``a.b=value`` strings parsed as YAML scalars, so ``full_finetune=false`` is False (no
``type=bool`` trap).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError
from .method_names import method_name, uses_representation

T = TypeVar("T")


def help_field(text: str, **kw: Any) -> Any:
    """A dataclass field whose ``text`` is its help (shown by ``--dry-run`` and the docs); ``kw`` as ``field``."""
    return field(metadata={"help": text}, **kw)


def check_setting(condition: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``condition``: the settings classes' one way to refuse a value."""
    if not condition:
        raise ConfigError(message)


def _check_finite(settings: Any, prefix: str = "") -> None:
    """Every float setting is a finite number: inf or NaN cannot train (or mean anything else)."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}{f.name} must be a finite number, got {value}")


# A learning rate outside this range is almost surely a typo (1e9 for 1e-4) or a unit mistake: warned
# of, not refused, since the right rate depends on the model and the optimiser (LESS, BIDS: 2e-5).
USUAL_LEARNING_RATES = (1e-7, 1e-1)


@dataclass
class LoraSettings:
    r: int = help_field("LoRA rank (LESS, BIDS: 128)", default=128)
    alpha: float = help_field("LoRA alpha (scale = alpha / r; LESS, BIDS: 512)", default=512.0)
    dropout: float = help_field("LoRA dropout (LESS, BIDS: 0.1)", default=0.1)
    target_modules: list[str] = help_field(
        "module names that get LoRA adapters",
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
    )

    def __post_init__(self) -> None:
        check_setting(self.r >= 1, f"lora.r must be >= 1, got {self.r}")
        check_setting(self.alpha > 0, f"lora.alpha must be > 0, got {self.alpha}")
        check_setting(0 <= self.dropout < 1, f"lora.dropout must be in [0, 1), got {self.dropout}")
        check_setting(len(self.target_modules) > 0, "lora.target_modules must name at least one module")
        _check_finite(self, "lora.")


@dataclass
class TrainSettings:
    epochs: int = help_field("passes over the training data", default=2)
    learning_rate: float = help_field("peak learning rate (LESS, BIDS: 2e-5)", default=2e-5)
    schedule: str = help_field("learning-rate decay after the warmup, per optimizer step: linear (LESS) | "
                           "cosine (BIDS) | constant", default="linear")
    warmup_ratio: float = help_field("fraction of optimizer steps with linear warmup (LESS, BIDS: 0.03)", default=0.03)
    weight_decay: float = help_field("AdamW weight decay", default=0.0)
    adam_beta1: float = help_field("AdamW beta1", default=0.9)
    adam_beta2: float = help_field("AdamW beta2", default=0.999)
    adam_epsilon: float = help_field("AdamW epsilon", default=1e-8)
    max_grad_norm: float = help_field("gradient clipping norm (0 disables)", default=1.0)
    batching: str = help_field(
        "how optimizer steps are formed. token_budget (fast): one length-packed batch per step, the "
        "mean loss of its examples, so a step's example count varies with their lengths. examples (the "
        "papers'): batch_size examples per step from a fresh shuffle each epoch, gradients accumulated "
        "over micro-batches under token_budget / max_batch_size, every example 1/batch_size of its step. "
        "Both regroup the examples every epoch", default="examples")
    batch_size: int = help_field("examples per optimizer step when batching=examples (LESS, BIDS: 128); "
                            "unused by token_budget", default=128)
    token_budget: int = help_field("padded tokens per batch (batch size x longest example); per micro-batch "
                              "when batching=examples", default=4096)
    max_batch_size: int = help_field("most examples in one batch (micro-batch when batching=examples)", default=64)
    max_length: int = help_field("tokens per example; longer ones are truncated on the right (LESS, BIDS: 2048)",
                            default=2048)
    seed: int = help_field("seed for LoRA init, dropout and which examples share a batch, in what order", default=0)
    full_finetune: bool = help_field("train every weight instead of LoRA adapters", default=False)
    lora: LoraSettings = help_field("LoRA settings", default_factory=LoraSettings)
    save_checkpoints: bool = help_field("keep a checkpoint (weights + Adam moments) per epoch", default=True)

    def __post_init__(self) -> None:
        _check_finite(self)
        check_setting(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check_setting(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        check_setting(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check_setting(self.max_grad_norm >= 0, f"max_grad_norm must be >= 0 (0 disables clipping), got {self.max_grad_norm}")
        check_setting(
            self.schedule in ("linear", "cosine", "constant"),
            f"schedule must be linear, cosine or constant, got {self.schedule!r}",
        )
        check_setting(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        check_setting(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "adam betas must be in [0, 1)")
        check_setting(self.adam_epsilon > 0, "adam_epsilon must be > 0")
        check_setting(self.max_length >= 2, f"max_length must be >= 2, got {self.max_length}")
        check_setting(
            self.token_budget >= self.max_length,
            f"token_budget ({self.token_budget}) must be at least max_length ({self.max_length}) "
            "so that the longest example fits in a batch",
        )
        check_setting(self.max_batch_size >= 1, "max_batch_size must be >= 1")
        check_setting(self.batching in ("token_budget", "examples"),
               f"batching must be token_budget or examples, got {self.batching!r}")
        check_setting(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")

    def warnings(self, prefix: str = "") -> list[str]:
        """Settings that can train but probably should not (a learning rate far outside the usual range)."""
        low, high = USUAL_LEARNING_RATES
        if low <= self.learning_rate <= high:
            return []
        return [f"{prefix}learning_rate {self.learning_rate:g} is far outside the usual range [{low:g}, {high:g}] "
                "(LESS, BIDS: 2e-5); training will likely diverge or not move"]


@dataclass
class EvalSettings:
    max_new_tokens: int = help_field("greedy tokens generated per test prompt", default=24)
    batch_size: int = help_field("prompts per generation batch; also the most examples per loss batch", default=64)
    default_checker: str = help_field("checker for test records that name none", default="exact")
    max_length: int = help_field("tokens per test example (prompt + reference answer) in the held-out loss "
                            "pass; longer ones are cut on the right, and one left without an answer "
                            "token is counted and listed in metrics.json", default=2048)
    loss_token_budget: int = help_field("padded tokens per held-out loss batch (batch size x longest example)",
                                   default=8192)

    def __post_init__(self) -> None:
        check_setting(self.max_new_tokens >= 1, "max_new_tokens must be >= 1")
        check_setting(self.batch_size >= 1, "batch_size must be >= 1")
        check_setting(self.max_length >= 2, f"eval.max_length must be >= 2, got {self.max_length}")
        check_setting(
            self.loss_token_budget >= self.max_length,
            f"eval.loss_token_budget ({self.loss_token_budget}) must be at least eval.max_length "
            f"({self.max_length}) so that the longest test example fits in a batch",
        )


@dataclass
class FeatureSettings:
    dim: int = help_field("projected feature size k (LESS: 8192)", default=8192)
    projection_seed: int = help_field("seed of the random projection, shared by every checkpoint and shard", default=0)
    projection: str = help_field("row_signs (each LoRA row through its own signed matrix: a dense projection's "
                            "accuracy) | shared_rows (one matrix per layer, before issue 20)", default="row_signs")
    dtype: str = help_field("stored feature dtype: float16 | float32", default="float16")
    token_budget: int = help_field("padded tokens per feature batch", default=4096)
    max_batch_size: int = help_field("most examples per feature batch", default=32)
    max_length: int = help_field("tokens per example (as in training; LESS: 2048)", default=2048)

    def __post_init__(self) -> None:
        check_setting(self.dim >= 1, f"features dim must be >= 1, got {self.dim}")
        check_setting(self.max_length >= 2, f"features max_length must be >= 2, got {self.max_length}")
        check_setting(self.max_batch_size >= 1, f"features max_batch_size must be >= 1, got {self.max_batch_size}")
        check_setting(self.projection in ("row_signs", "shared_rows"),
               f"features projection must be row_signs or shared_rows, got {self.projection!r}")
        check_setting(self.dtype in ("float16", "float32"), f"features dtype must be float16 or float32, got {self.dtype!r}")
        check_setting(self.token_budget >= self.max_length, "features token_budget must be at least max_length")


@dataclass
class InfluenceSettings:
    warmup_fraction: float = help_field("share of the pool the warmup trains on (LESS: 0.05, BIDS: 1.0)", default=1.0)
    warmup: TrainSettings = help_field("warmup training (LESS: 4 epochs, LoRA r=128, alpha=512)",
                                  default_factory=lambda: TrainSettings(epochs=4))
    features: FeatureSettings = help_field("gradient features", default_factory=FeatureSettings)

    def __post_init__(self) -> None:
        check_setting(0 < self.warmup_fraction <= 1, f"warmup_fraction must be in (0, 1], got {self.warmup_fraction}")
        check_setting(not self.warmup.full_finetune, "the warmup must use LoRA: gradient features are LoRA gradients")
        check_setting(self.warmup.save_checkpoints, "the warmup must save checkpoints (features are taken at each)")


@dataclass
class LPSettings:
    """Learning percentage: how the selection model is trained and how LP selects."""

    selection_model: str = help_field("the model whose LP selects; '' = the run's own model "
                                 "(e.g. facebook/opt-350m selecting for a 13B)", default="")
    label: str = help_field("names the selection model's folder and its arms when a run compares several "
                       "('' for one)", default="")
    epochs: int = help_field("n: epochs the selection model trains on the whole pool", default=3)
    variant: str = help_field("lp1 or lp_app", default="lp1")
    clusters: int | None = help_field("k-means clusters; null: max(1, round(N / 52)), the paper's mean cluster size "
                                 "(1,000 for 52K examples)", default=None)
    tolerance: float = help_field("losses closer than this count as unchanged", default=1e-3)
    embedding_model: str = help_field("what embeds the pool for the clustering: '' = the selection model's mean-pooled "
                                 "final hidden states (ours); a local sentence-encoder folder (e.g. "
                                 "all-MiniLM-L6-v2 saved with save_pretrained, the reference's) = its mean-pooled "
                                 "states; nothing is downloaded", default="")
    selection_train: TrainSettings | None = help_field(
        "the selection model's training; null: the run's `train` settings with `epochs` epochs, seed 0 "
        "and per-epoch checkpoints", default=None)
    # Loss and embedding passes. None: the selection run's training budget, which on a CPU is also the
    # fastest (larger padded batches are slower there); on a GPU a larger budget may pay.
    token_budget: int | None = help_field("padded tokens per loss/embedding batch; null: the training budget",
                                     default=None)
    max_batch_size: int = help_field("most examples per loss/embedding batch", default=64)

    def __post_init__(self) -> None:
        check_setting(self.epochs >= 1, f"learning_percentage.epochs must be >= 1, got {self.epochs}")
        check_setting(self.variant in ("lp1", "lp_app"), f"learning_percentage.variant must be lp1 or lp_app, got {self.variant!r}")
        epochs = self.selection_train.epochs if self.selection_train is not None else self.epochs
        check_setting(self.variant != "lp1" or epochs >= 2,
               f"learning_percentage: lp1 needs at least 2 epochs of the selection model (with one, every example's "
               f"LP(1) is 1), got {epochs}; set learning_percentage.epochs: 2 or more")
        check_setting(self.clusters is None or self.clusters >= 1,
               f"learning_percentage.clusters must be >= 1 (or null for the paper's rule), got {self.clusters}")
        check_setting(self.tolerance >= 0 and math.isfinite(self.tolerance),
               f"learning_percentage.tolerance must be a finite number >= 0, got {self.tolerance}")
        check_setting(self.token_budget is None or self.token_budget >= 1,
               f"learning_percentage.token_budget must be >= 1 (or null), got {self.token_budget}")
        check_setting(self.max_batch_size >= 1, f"learning_percentage.max_batch_size must be >= 1, got {self.max_batch_size}")
        check_setting(self.selection_train is None or self.selection_train.save_checkpoints,
               "learning_percentage.selection_train must save checkpoints (the loss passes read each epoch's)")

    def selection_train_settings(self, run_train: TrainSettings) -> TrainSettings:
        """The selection model's training: as given, else the run's own with ``epochs`` epochs."""
        if self.selection_train is not None:
            return self.selection_train
        return dataclasses.replace(run_train, epochs=self.epochs, seed=0, save_checkpoints=True)

    def pass_token_budget(self, train: TrainSettings) -> int:
        return max(self.token_budget or train.token_budget, train.max_length)

    def options(self) -> dict[str, Any]:
        return {"lp_variant": self.variant, "clusters": self.clusters, "lp_tolerance": self.tolerance}


# Model dtypes a run accepts (models.loading.resolve_dtype makes "auto" concrete per device).
MODEL_DTYPES = ("auto", "float32", "bfloat16", "bfloat16-autocast", "float16")


@dataclass
class RunConfig:
    """A whole selection run on a real model: ``instruct-select run CONFIG.yaml``."""

    model: str = help_field("base model: local folder or hub id (weights must be available locally or cached)", default="")
    pool: str = help_field("training pool file or folder (JSONL, JSON, Parquet, datasets folder)", default="")
    validation: str = help_field("validation folder: one file per target task, equal sizes for BIDS", default="")
    tests: str = help_field("test folder (one file per capability) to evaluate each fine-tuned model; '' skips", default="")
    run_dir: str = help_field("where every stage writes", default="runs/run")
    methods: list[str] = help_field("selection methods; a grid selector may name its representation: bids:rds+ "
                               "(`instruct-select methods`)", default_factory=lambda: ["random", "less", "bids"])
    representation: str = help_field("the representation every grid selector in methods (less, bids, rds+, round-robin, "
                                "doubly-greedy, uot, knn-uniform) scores with unless it names its own: less "
                                "(gradients), rds+ (pooled hidden states) or embed (embed_encoder); '' = each "
                                "paper's own", default="")
    embed_encoder: str = help_field("local encoder folder (config.json, weights, tokenizer) whose mean-pooled states "
                               "are the embed representation; needed by methods that use embed", default="")
    budgets: list[str] = help_field("budgets: 5%, 0.05, 1000 or 2000000tok", default_factory=lambda: ["5%"])
    seed: int = help_field("seed for selection and training", default=0)
    dtype: str = help_field("model dtype: auto (bfloat16 where the device computes it fast, else float32) | float32 | "
                       "bfloat16 | bfloat16-autocast (float32 weights, bfloat16 products) | float16", default="auto")
    device: str = help_field("cpu, cuda, cuda:N or auto", default="auto")
    chat_template: str = help_field("'' (the tokenizer's), 'plain', or a Jinja template", default="")
    influence: InfluenceSettings = help_field("warmup and gradient features", default_factory=InfluenceSettings)
    learning_percentage: LPSettings = help_field("selection model for lp-hard / lp-easy / lp-random",
                                            default_factory=LPSettings)
    ifd_model: str = help_field("the model whose losses give ifd's IFD scores (Superfiltering: a small one such as "
                           "GPT-2 for a large one); '' = the run's own model", default="")
    train: TrainSettings = help_field("fine-tuning on each selection", default_factory=TrainSettings)
    finetune: bool = help_field("fine-tune on each selection after selecting", default=True)
    eval: EvalSettings = help_field("evaluation of each fine-tuned model", default_factory=EvalSettings)
    evaluate_base: bool = help_field("also evaluate the untuned model when the run fine-tunes and has tests (the "
                                "baseline row of every results table)", default=True)
    data_format: str = help_field("the pool's format: auto or a format name (as --format)", default="auto")
    skip_invalid: bool = help_field("count and skip invalid pool records instead of stopping (as --skip-invalid)",
                               default=False)
    id_field: str = help_field("record field holding each example's id; '' = given ids or content hashes "
                          "(as --id-field)", default="")
    columns: dict[str, str] = help_field("field mapping for unusual records, LLaMA-Factory's keys: prompt, query, "
                                    "response, history, system, messages (as --columns)", default_factory=dict)
    selection_options: dict[str, Any] = help_field(
        "options every selector reads, e.g. less_groups: subtask (LESS's code's per-subtask max), "
        "allow_unequal_validation: true (BIDS), lp_quotas: proportional (learning percentage)",
        default_factory=dict)

    def __post_init__(self) -> None:
        check_setting(bool(self.model), "model is required")
        check_setting(bool(self.pool), "pool is required")
        check_setting(len(self.methods) > 0 and len(self.budgets) > 0, "name at least one method and one budget")
        check_setting(self.dtype in MODEL_DTYPES, f"dtype {self.dtype!r} is not one of {', '.join(MODEL_DTYPES)}")
        check_setting(bool(str(self.run_dir).strip()), "run_dir is empty; give the folder every stage writes into")
        _check_selection_options(self.selection_options)
        self.methods = [method_name(m, self.representation or None) for m in self.methods]
        embed = [m for m in self.methods if uses_representation(m, "embed")]
        check_setting(not embed or bool(self.embed_encoder),
               f"methods {embed} use the embed representation, which needs an encoder: set embed_encoder to a "
               "local encoder folder (none is given, and none is substituted)")

    def warnings(self) -> list[str]:
        """Settings that can run but probably should not (see ``TrainSettings.warnings``)."""
        found = self.train.warnings("train.") + self.influence.warmup.warnings("influence.warmup.")
        if self.learning_percentage.selection_train is not None:
            found += self.learning_percentage.selection_train.warnings("learning_percentage.selection_train.")
        return found


# The selection_options some selector reads, and the values it takes (None: any of that type).
SELECTION_OPTIONS: dict[str, tuple[type, tuple | None]] = {
    "allow_unequal_validation": (bool, None),  # BIDS
    "less_groups": (str, ("task", "subtask")),  # LESS
    "lp_quotas": (str, ("coverage", "proportional")),  # learning percentage
    "lp_unlearned": (str, ("ratio", "last")),
    "uot_epsilon": (float, None),  # uot (select/uot.py)
    "uot_reg_m": (list, None),
    "uot_max_iter": (int, None),
    "uot_tolerance": (float, None),
    "knn_alpha": (float, None),  # knn-uniform (select/knn_uniform.py)
    "knn_c": (float, None),
    "knn_neighbours": (int, None),
}
# Learning percentage's own settings, which override these keys: set there, not in selection_options.
LP_OPTIONS = {"lp_variant": "variant", "lp_tolerance": "tolerance", "clusters": "clusters"}


def _check_selection_options(options: dict[str, Any]) -> None:
    for key, value in options.items():
        if key in LP_OPTIONS:
            raise ConfigError(f"selection_options.{key} is learning percentage's setting: set "
                              f"learning_percentage.{LP_OPTIONS[key]} instead (it decides)")
        if key not in SELECTION_OPTIONS:
            raise ConfigError(f"unknown selection option {key!r}; known: {', '.join(SELECTION_OPTIONS)}")
        kind, choices = SELECTION_OPTIONS[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = options[key] = float(value)  # YAML's 1 for 1.0
        typed = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        check_setting(typed and (choices is None or value in choices),
               f"selection_options.{key} must be " + (" or ".join(map(repr, choices)) if choices else kind.__name__)
               + f", got {value!r}")


# --------------------------------------------------------------------------------------------
# Generic (de)serialisation


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain nested dict (for manifests and YAML)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        check_setting(value is not None, f"{where} is empty; give its settings as a mapping (or leave it out for the "
                                  "defaults)")
        check_setting(isinstance(value, dict), f"{where} must be a mapping of settings, got {value!r}")
        return from_dict(hint, value, where=where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads "1e-4" (no dot) as a string; accept any text float() understands.
        try:
            value = float(value)
        except ValueError:
            pass
    if hint is float and isinstance(value, float):
        check_setting(math.isfinite(value), f"{where} must be a finite number, got {value}")
        return value
    if hint in (int, float, str, bool):
        ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
        check_setting(ok, f"{where} must be {hint.__name__}, got {value!r}")
        return value
    if origin is dict:
        check_setting(isinstance(value, dict), f"{where} must be a mapping (key: value), got {value!r}")
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        return {_coerce(k, key_hint, f"{where} key"): _coerce(v, value_hint, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if origin is list:
        check_setting(isinstance(value, (list, tuple)), f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError("; ".join(errors))
    return value


def from_dict(cls: type[T], data: dict | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys by name."""
    check_setting(data is None or isinstance(data, dict), f"{where or 'the settings'} must be a mapping, got {data!r}")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    prefix = f"{where}." if where else ""
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(prefix + u for u in unknown)}; "
            f"known: {', '.join(prefix + n for n in names)}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` overrides to a nested dict; values are parsed as YAML scalars."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.epochs=3)")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = value
    return data


def check_paths_exist(paths: dict[str, str]) -> None:
    """Refuse by its key a data path that is given but absent (e.g. a recipe's placeholder)."""
    for key, path in paths.items():
        if str(path) and not Path(path).expanduser().exists():
            raise ConfigError(f"{key}: {path} does not exist; give the path of the {key} file or folder "
                              f"(in the config, or {key}=PATH after it on the command line)")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """A ``RunConfig`` from the YAML file ``path`` with ``overrides``, each ``key=value`` (a dotted
    key for a nested setting: ``train.epochs=3``; the value read as YAML: ``budgets=[5%,10%]``).
    Unknown keys and values of the wrong type are refused by name (``ConfigError``); returns the
    checked config."""
    return from_dict(RunConfig, apply_overrides(load_yaml(path), list(overrides)))


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists() else
                          f"config {path} is a folder; give a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file (its bytes are not UTF-8 text); give a YAML config "
                          "such as configs/lab.yaml") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data
