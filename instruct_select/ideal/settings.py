"""IDEAL's typed settings, and the YAML recipe format ``load_ideal_config`` reads.

A recipe is one flat YAML mapping: the five paths of ``IdealPaths`` (model, pool, reference,
tests, run_dir), an optional ``kind: ideal`` marker (lets a command line tell an IDEAL recipe from
a selection ``RunConfig``), and every field of ``IdealSettings`` (``train`` and ``eval`` nested as
in ``RunConfig``). Unknown keys are refused by name; ``key=value`` overrides apply as for every
other config (``apply_overrides``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ..config import (MODEL_DTYPES, EvalSettings, TrainSettings, apply_overrides, check_paths_exist, check_setting,
                      from_dict, help_field, load_yaml)
from ..data.loading import load_test_sets
from ..evaluate.capabilities import prepare_items
from ..models.loading import check_model_source, resolve_device
from .kfac import select_layers

FISHERS = ("sampled", "empirical")
PATH_KEYS = ("model", "pool", "reference", "tests", "run_dir")


@dataclass
class IdealSettings:
    """Everything that shapes an IDEAL run besides its paths."""

    rounds: int = help_field("update rounds R; each trains on the current mixture and resizes the domains", default=2)
    m: float = help_field("largest relative volume change per round: beta = -m * I / max|I| (paper: 0.15)", default=0.15)
    damping: float = help_field("damping added to the K-FAC eigenvalues before dividing", default=0.1)
    damping_relative: bool = help_field(
        "damping is a multiple of each layer's mean eigenvalue (scale-free across layers); "
        "false: an absolute value", default=True)
    layers: list[str] = help_field(
        "linear layers whose weights carry the influence: a module name, a suffix of one "
        "(gate_proj matches every model.layers.N.mlp.gate_proj) or a glob", default_factory=lambda: [
            "gate_proj", "up_proj", "down_proj"])
    layers_per_pass: int = help_field(
        "fit this many layers' factors per pass over the data (bounds GPU memory on large "
        "models); 0: all in one pass", default=0)
    fisher: str = help_field("sampled: the true Fisher, labels drawn from the model (seeded per example); "
                        "empirical: the data's labels", default="sampled")
    ekfac: bool = help_field("EK-FAC: refit the eigenvalues in the Kronecker eigenbasis", default=True)
    fit_examples: int = help_field("at most this many mixture examples fit the factors (seeded); 0: all",
                              default=0)
    reference_size: int = help_field("at most this many reference examples, an even share per target "
                                "task (seeded; paper: ~500); 0: all", default=0)
    reference_tasks: list[str] = help_field("target tasks taken from the reference folder; empty: all",
                                       default_factory=list)
    domain_field: str = help_field("record field naming an example's domain; absent: the example's task",
                              default="domain")
    domain_map: dict[str, str] = help_field("label -> domain ('*' catches the rest)", default_factory=dict)
    domain_map_file: str = help_field("JSON or YAML file holding domain_map instead", default="")
    min_volume: int = help_field("no domain shrinks below this many examples", default=1)
    train_final: bool = help_field("train (and evaluate) on the last round's mixture", default=True)
    seed: int = help_field("seed for label sampling, subsets and resampling", default=0)
    dtype: str = help_field("model dtype: auto | float32 | bfloat16 | bfloat16-autocast | float16 (as the run "
                       "config's)", default="auto")
    device: str = help_field("cpu, cuda, cuda:N or auto", default="auto")
    chat_template: str = help_field("'' (the tokenizer's), 'plain', or a Jinja template", default="")
    stats_token_budget: int = help_field("padded tokens per statistics batch; 0: train.token_budget",
                                    default=0)
    stats_batch_size: int = help_field("most examples per statistics batch; 0: train.max_batch_size",
                                  default=0)
    train: TrainSettings = help_field("training on each round's mixture", default_factory=TrainSettings)
    eval: EvalSettings = help_field("evaluation of each round's model (when tests are given)",
                               default_factory=EvalSettings)

    def __post_init__(self) -> None:
        check_setting(self.rounds >= 1, f"rounds must be >= 1, got {self.rounds}")
        check_setting(0 < self.m < 1, f"m must be in (0, 1) so that no domain vanishes, got {self.m}")
        check_setting(self.damping >= 0, f"damping must be >= 0, got {self.damping}")
        check_setting(len(self.layers) > 0, "layers must name at least one linear layer (e.g. gate_proj)")
        check_setting(self.layers_per_pass >= 0, "layers_per_pass must be >= 0 (0: all layers in one pass)")
        check_setting(self.fisher in FISHERS, f"fisher must be one of {', '.join(FISHERS)}, got {self.fisher!r}")
        check_setting(self.fit_examples >= 0 and self.reference_size >= 0,
               "fit_examples and reference_size must be >= 0 (0: all)")
        check_setting(self.min_volume >= 1, f"min_volume must be >= 1, got {self.min_volume}")
        check_setting(self.dtype in MODEL_DTYPES, f"dtype {self.dtype!r} is not one of {', '.join(MODEL_DTYPES)}")
        check_setting(not (self.domain_map and self.domain_map_file),
               "give domain_map or domain_map_file, not both")
        check_setting(isinstance(self.domain_map, dict)
               and all(isinstance(k, str) and isinstance(v, str) for k, v in self.domain_map.items()),
               "domain_map must map label strings to domain strings, e.g. {gsm8k: math}")
        check_setting(self.stats_token_budget == 0 or self.stats_token_budget >= self.train.max_length,
               "stats_token_budget must be 0 or at least train.max_length")
        check_setting(self.stats_batch_size >= 0, "stats_batch_size must be >= 0")
        check_setting(self.stats_token_budget >= 0, "stats_token_budget must be >= 0 (0: train.token_budget)")
        check_setting(all(isinstance(layer, str) and layer.strip() for layer in self.layers),
               f"layers must be module names, got {self.layers}")

    @property
    def token_budget(self) -> int:
        return self.stats_token_budget or self.train.token_budget

    @property
    def batch_size(self) -> int:
        return self.stats_batch_size or self.train.max_batch_size

    def influence_settings(self) -> dict[str, Any]:
        """The settings that shape a round's influences and volumes (training is fingerprinted
        through the model it makes), recorded in each round's manifest."""
        keys = ("m", "damping", "damping_relative", "layers", "fisher", "ekfac", "fit_examples",
                "reference_size", "reference_tasks", "domain_field", "min_volume", "seed", "dtype")
        values = {k: getattr(self, k) for k in keys}
        values["max_length"] = self.train.max_length
        return values


@dataclass
class IdealPaths:
    model: str = help_field("base model: local folder or hub id")
    pool: str = help_field("the training mixture: a file or folder in any supported format")
    reference: str = help_field("reference set: a folder with one file per target task (e.g. validation)")
    tests: str = help_field("test folder to evaluate each round's model; '' skips", default="")
    run_dir: str = help_field("where every stage writes (IDEAL's rounds go to RUN_DIR/ideal/)",
                         default="runs/ideal")


def load_ideal_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()
                      ) -> tuple[IdealPaths, IdealSettings]:
    """Read a recipe (see the module docstring) into its paths and its settings."""
    data = apply_overrides(load_yaml(path), list(overrides))
    kind = data.pop("kind", "ideal")
    check_setting(kind == "ideal", f"{path}: kind is {kind!r}; an IDEAL recipe has kind: ideal")
    missing = [k for k in ("model", "pool", "reference") if not data.get(k)]
    check_setting(not missing, f"{path}: {', '.join(missing)} required (the model, the training mixture and "
                        "the reference set)")
    paths = from_dict(IdealPaths, {k: str(data.pop(k)) for k in PATH_KEYS if k in data})
    return paths, from_dict(IdealSettings, data)


def check_ideal_inputs(paths: IdealPaths, settings: IdealSettings) -> None:
    """What an IDEAL run can check before any work, without loading a model: the data paths exist
    (a recipe's placeholders are refused), the model folder looks like one, the device exists, the
    layers match linear layers of the model (on its weightless skeleton), the tests' checkers exist."""
    check_paths_exist({"pool": paths.pool, "reference": paths.reference, "tests": paths.tests})
    check_model_source(paths.model)
    resolve_device(settings.device)
    check_layers(paths.model, settings.layers)
    if paths.tests:
        prepare_items(load_test_sets(paths.tests), settings.eval.default_checker)  # every record can be scored


def check_layers(model: str, layers: list[str]) -> None:
    """The layers match linear layers of a local model, found on its skeleton (built on the meta
    device from config.json: no weights are read, so it is instant even for an 8B model)."""
    folder = Path(model).expanduser()
    if not (folder / "config.json").is_file():
        return  # a hub id or an adapter folder: checked when the model loads
    config = AutoConfig.from_pretrained(str(folder))
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    select_layers(skeleton, layers)
