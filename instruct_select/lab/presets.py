"""Settings tuned for the lab's tiny models: the demo's and the tests' defaults.

Plain functions, so a variant is a call with different arguments rather than a copied config.
"""
from __future__ import annotations

from ..config import EvalSettings, FeatureSettings, InfluenceSettings, LoraSettings, TrainSettings
from .build import LabSettings
from .pool import LabDataConfig
from .pretrain import LabModelSpec


def lab_train_settings(seed: int = 0, **overrides) -> TrainSettings:
    """LoRA fine-tuning for the lab models: high learning rate and rank, as tiny models need."""
    values = dict(
        epochs=5,
        learning_rate=3e-3,
        schedule="linear",
        warmup_ratio=0.05,
        # Stated, not inherited: the built-in defaults are the papers' (128 examples a step, lr 2e-5,
        # LoRA r=128 with dropout 0.1, 3% warmup, 2048 tokens), which suit 8B models, not tiny ones.
        batching="token_budget",
        # Small batches: a tiny model needs many updates (about 630 over the full 4000-example
        # pool in 5 epochs), and a 15% subset still gets a useful number of them.
        token_budget=2048,
        max_batch_size=32,
        max_length=128,
        seed=seed,
        lora=LoraSettings(r=16, alpha=32, dropout=0.0,
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    )
    values.update(overrides)
    return TrainSettings(**values)


def lab_eval_settings() -> EvalSettings:
    return EvalSettings(max_new_tokens=16, batch_size=128)


def lab_influence_settings(seed: int = 0) -> InfluenceSettings:
    """BIDS's setting scaled to the lab: warm up on the whole pool for 4 epochs, k = 2048."""
    return InfluenceSettings(
        warmup_fraction=1.0,
        warmup=lab_train_settings(seed=seed, epochs=4),
        features=FeatureSettings(dim=2048, projection_seed=0, dtype="float16", token_budget=4096,
                                 max_batch_size=64, max_length=128),
    )


def tiny_lab_settings(seed: int = 0):
    """A lab that builds in seconds (one tiny model size): for tests and smoke runs, not for results."""
    return LabSettings(
        seed=seed,
        vocab_size=400,
        sizes=("small",),
        data=LabDataConfig(pool_size=240, validation_per_capability=4, test_per_capability=6, corpus_chars=60_000),
        specs={"small": LabModelSpec(hidden=32, layers=1, heads=2, epochs=0.5, block=64, batch_size=8)},
    )
