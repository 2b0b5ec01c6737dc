"""The run-folder layout: every path inside a run directory comes from here.

    RUN/
      influence/                 artifacts shared by every method, budget and seed
        warmup/ warmup-data/     LoRA warmup (on a random fraction of the pool when asked)
        features/SPLIT/epoch-E/  gradient features of the pool and the validation set
        scores/                  the attribution matrix
        hidden-states/SPLIT/     last-token states under the last warmup checkpoint (RDS)
        representations/SPLIT/   the base model's position-weighted mean states (RDS+)
        ifd-losses/              each pool example's response loss with and without its prompt (IFD)
        learning_percentage[-LABEL]/   a selection model: train/, losses/epoch-E/, embeddings/
      base/evaluation/           the untuned model, when asked
      METHOD-BUDGET-seedS[-by-LABEL]/   one arm: select/, train/, evaluation/
      .../train/model/ .../train/checkpoints/epoch-E/   any training run (arm, warmup, selection model)
      full-seedS/                the whole pool (no budget)
      results.json results.md    the run's table; experiments.json experiments.md for a grid
      agreement-A-vs-B.json      Kendall τ between two selection models' learning percentages
      ideal/round-R/ ideal/final/ ideal/summary.json    IDEAL's rounds
      report/                    the HTML report
      data/                      data an experiment prepared for the run (e.g. the real mixed benchmark)
      NAME/                      a run of its own inside this one (``child``), laid out the same way

Readers (the report) find arms through ``RunLayout.arms``, which reads each arm's own manifest:
folder names are written here and never parsed back.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .artifacts import finished_manifest
from .budget import Budget


@dataclass(frozen=True)
class Arm:
    """One selection to make, train on and evaluate. ``selected_by`` labels the selection model
    (learning percentage) when a run compares several."""

    method: str
    budget: str
    seed: int = 0
    selected_by: str = ""

    @property
    def label(self) -> str:
        """What tables call it: ``method @ budget``; the whole pool is just ``full``."""
        name = self.method if self.method == "full" else f"{self.method} @ {Budget.parse(self.budget)}"
        return name + (f" (by {self.selected_by})" if self.selected_by else "")

    @property
    def folder_name(self) -> str:
        if self.method == "full":
            return f"full-seed{self.seed}"
        tag = str(Budget.parse(self.budget)).replace("%", "pct")
        return f"{self.method}-{tag}-seed{self.seed}" + (f"-by-{self.selected_by}" if self.selected_by else "")


def _folder(relative: str) -> property:
    """A path below the object's ``root``: one line per name of the layout."""
    return property(lambda self: self.root / relative, doc=f"ROOT/{relative}")


@dataclass(frozen=True)
class TrainFolders:
    """A training run's folder (``train`` below): the trained model and one checkpoint per epoch."""

    root: Path
    model = _folder("model")
    checkpoints = _folder("checkpoints")

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch}"


@dataclass(frozen=True)
class ArmFolders:
    root: Path
    select = _folder("select")
    train = _folder("train")
    evaluation = _folder("evaluation")

    @property
    def model(self) -> Path:
        return TrainFolders(self.train).model


@dataclass(frozen=True)
class SelectionModelFolders:
    """A learning-percentage selection model's run: its training, loss trajectories, embeddings."""

    root: Path
    train = _folder("train")
    losses = _folder("losses")
    embeddings = _folder("embeddings")


class RunLayout:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def child(self, name: str) -> "RunLayout":
        """A run of its own inside this one (an experiment's seed, a selection inside a mixture)."""
        return RunLayout(self.root / name)

    def children(self) -> list["RunLayout"]:
        """The runs inside this one that hold IDEAL rounds or influence artifacts, in name order."""
        if not self.root.is_dir():
            return []
        return [RunLayout(p) for p in sorted(self.root.iterdir())
                if p.is_dir() and ((p / "ideal").is_dir() or (p / "influence").is_dir())]

    # Influence artifacts, shared by every method, budget and seed
    influence = _folder("influence")
    warmup = _folder("influence/warmup")
    warmup_data = _folder("influence/warmup-data")
    features = _folder("influence/features")
    scores = _folder("influence/scores")
    ifd_losses = _folder("influence/ifd-losses")

    def feature_store(self, split: str, epoch: int) -> Path:
        return self.features / split / f"epoch-{epoch}"

    def hidden_states(self, split: str) -> Path:
        return self.influence / "hidden-states" / split

    def representations(self, split: str) -> Path:
        return self.influence / "representations" / split

    def encoder_embeddings(self, split: str) -> Path:
        """EMBED's mean-pooled encoder states of ``split`` (pool or validation)."""
        return self.influence / "embed" / split

    def selection_model(self, label: str = "") -> SelectionModelFolders:
        return SelectionModelFolders(self.influence / ("learning_percentage" + (f"-{label}" if label else "")))

    def selection_models(self) -> list[SelectionModelFolders]:
        """Every selection model this run trained (learning percentage), in name order."""
        if not self.influence.is_dir():
            return []
        return [SelectionModelFolders(p) for p in sorted(self.influence.glob("learning_percentage*")) if p.is_dir()]

    # Arms
    def arm(self, arm: Arm) -> ArmFolders:
        return ArmFolders(self.root / arm.folder_name)

    @property
    def base(self) -> ArmFolders:
        return ArmFolders(self.root / "base")

    def arms(self) -> list[ArmFolders]:
        """Every arm folder holding a finished selection, in name order."""
        if not self.root.is_dir():
            return []
        return [ArmFolders(p) for p in sorted(self.root.iterdir())
                if p.is_dir() and finished_manifest(p / "select") is not None]

    # Tables, IDEAL, the report
    results_json = _folder("results.json")
    results_md = _folder("results.md")
    experiments_json = _folder("experiments.json")
    experiments_md = _folder("experiments.md")
    ideal = _folder("ideal")
    ideal_final = _folder("ideal/final")
    ideal_summary = _folder("ideal/summary.json")
    report = _folder("report")
    data = _folder("data")

    def agreement(self, a: str, b: str) -> Path:
        return self.root / f"agreement-{a}-vs-{b}.json"

    def ideal_round(self, r: int) -> Path:
        return self.ideal / f"round-{r}"
