"""Building the capability lab: data, tokenizer and pretrained base models, each a cached stage.

``build_lab(out, LabSettings(seed=0))`` writes

    out/data/        corpus.txt, pool.jsonl, validation/<capability>.jsonl, test/<capability>.jsonl
    out/tokenizer/   the locally trained tokenizer with its chat template
    out/models/S/    a tiny Llama of size S pretrained on the corpus, with the tokenizer beside it

each with a manifest. A second call with the same settings reuses everything; the same seed gives
byte-identical data and tokenizer files.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import AutoTokenizer

from ..artifacts import fingerprint_path, run_stage
from .corpus import read_corpus
from .pool import LabDataConfig, write_lab_data
from ..errors import ConfigError
from .pretrain import MODEL_SIZES, LabModelSpec, pretrain
from .tokenizer import train_lab_tokenizer


@dataclass
class LabSettings:
    """The capability lab to build: ``seed`` of its data, tokenizer and models; ``pool_size``, the
    training pool's examples (None: ``LabDataConfig``'s default); ``vocab_size``, the tokenizer's
    tokens; ``sizes``, the model sizes pretrained; ``data``, the rest of the data's shape
    (``LabDataConfig``); ``specs``, the model shapes by size (None: ``MODEL_SIZES``)."""

    seed: int = 0
    pool_size: int | None = None  # None: LabDataConfig's default
    vocab_size: int = 1024
    sizes: tuple[str, ...] = ("small", "large")
    data: LabDataConfig = field(default_factory=LabDataConfig)
    specs: dict[str, LabModelSpec] | None = None  # None: MODEL_SIZES (tests pass tiny budgets)

    def spec(self, size: str) -> LabModelSpec:
        specs = self.specs or MODEL_SIZES
        if size not in specs:
            raise ConfigError(f"unknown lab model size {size!r}; known: {', '.join(specs)}")
        return specs[size]

    def data_config(self) -> LabDataConfig:
        if self.pool_size is None:
            return self.data
        return LabDataConfig(**{**asdict(self.data), "pool_size": self.pool_size})


@dataclass
class LabPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pool(self) -> Path:
        return self.data / "pool.jsonl"

    @property
    def validation(self) -> Path:
        return self.data / "validation"

    @property
    def test(self) -> Path:
        return self.data / "test"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    def model(self, size: str = "large") -> Path:
        return self.root / "models" / size

    def describe(self) -> dict[str, Path]:
        return {"pool": self.pool, "validation": self.validation, "test": self.test,
                "tokenizer": self.tokenizer,
                **{f"model {p.name}": p for p in sorted((self.root / "models").glob("*")) if p.is_dir()}}


def build_lab(out: str | Path, settings: LabSettings | None = None) -> LabPaths:
    """Build the capability lab into the folder ``out`` (cached: a finished part is reused, one made
    with other settings refused by name): its data (pool, validation, test, corpus), its tokenizer
    and one pretrained model per size of ``settings`` (default ``LabSettings()``). Returns the
    lab's paths."""
    settings = settings or LabSettings()
    paths = LabPaths(Path(out))
    config = settings.data_config()

    def build_data(folder: Path) -> dict:
        return write_lab_data(folder, config, settings.seed)

    run_stage(paths.data, "lab-data", asdict(config), {}, build_data, seed=settings.seed)

    def build_tokenizer(folder: Path) -> dict:
        documents = read_corpus(paths.data / "corpus.txt")
        tokenizer = train_lab_tokenizer(documents, pool_texts(paths.pool), settings.vocab_size, folder)
        return {"vocab_size": len(tokenizer)}

    run_stage(paths.tokenizer, "lab-tokenizer", {"vocab_size": settings.vocab_size},
                    {"data": fingerprint_path(paths.data)}, build_tokenizer, seed=settings.seed)
    for size in settings.sizes:
        spec = settings.spec(size)

        def build_model(folder: Path, spec=spec) -> dict:
            tokenizer = AutoTokenizer.from_pretrained(str(paths.tokenizer))
            documents = read_corpus(paths.data / "corpus.txt")
            model, facts = pretrain(documents, tokenizer, spec, settings.seed)
            model.save_pretrained(str(folder))
            tokenizer.save_pretrained(str(folder))
            return facts

        run_stage(paths.model(size), "lab-model", asdict(spec),
                  {"data": fingerprint_path(paths.data), "tokenizer": fingerprint_path(paths.tokenizer)},
                  build_model, seed=settings.seed)
    return paths


def pool_texts(pool_path: Path) -> list[str]:
    """Every message text of the pool, so the tokenizer also knows the instruction phrasing."""
    texts = []
    with open(pool_path, encoding="utf-8") as fh:
        for line in fh:
            texts.extend(m["content"] for m in json.loads(line)["messages"])
    return texts
