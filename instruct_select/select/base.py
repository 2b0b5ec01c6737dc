"""What every selector shares: the context it reads, the ranking it returns, and the registry.

A selector ranks pool ids (best first) up to a limit; the budget then keeps a prefix of that
ranking, so one mechanism serves counts, fractions and token totals. Most rankings are also
prefix-consistent across budgets (BIDS's first k picks are its selection at budget k); learning
percentage's are not, because its per-cluster quotas are computed from the budget (see its module
docstring), so it ranks for the budget it is given.

A selector declares everything the run must know of it (the ``Selector`` protocol): the artifacts it
needs (``needs``), so the pipeline runs only the producers it requires; whether it ignores the
budget; its check of the validation set; the options, models and arm label its own settings give.
The run loop and the pipeline call these hooks and know no method by name. ``BaseSelector`` gives
the defaults, so a simple selector declares only its name, needs, description and ``rank``;
``registry`` maps names to selectors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import RunConfig
from ..data.example import Example
from ..errors import ConfigError

# The needs whose artifact scores the pool against the validation set: a selector needing one of
# them needs ``validation`` (``BaseSelector.scores_against_validation``).
VALIDATION_NEEDS = frozenset({"attribution", "hidden_states", "representations", "encoder_embeddings"})


@dataclass
class SelectionContext:
    """Everything a selector may read: ``pool`` (the Examples to rank), ``seed`` (for any random
    choice), ``artifacts`` (a need, e.g. "attribution", mapped to its value) and ``options`` (the
    run's ``selection_options`` merged with the selector's own, ``Selector.options``)."""

    pool: list[Example]
    seed: int = 0
    artifacts: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def need(self, name: str) -> Any:
        """The value of the artifact ``name``; refused, naming the command that makes it, when absent."""
        if name not in self.artifacts:
            raise ConfigError(missing_need(name))
        return self.artifacts[name]


# The needs that ``instruct-select select`` takes ready-made, and its flag for each; ``run`` computes
# every need of its methods.
SELECT_FLAGS = {"attribution": "--scores"}


def missing_need(need: str, method: str | None = None) -> str:
    """Why a selector cannot run without ``need`` (an artifact's name), and the command that makes
    it; ``method``: the method as the user named it (None: "this selector"). Returns the message."""
    who = f"--method {method}" if method else "this selector"
    run = (f"`instruct-select run CONFIG` with {method or 'the method'} in its methods "
           "(finetune=false stops after selecting)")
    if need in SELECT_FLAGS:
        return (f"{who} needs influence scores ('{need}'): compute them with {run}, which writes "
                f"RUN/influence/scores; then pass {SELECT_FLAGS[need]} RUN/influence/scores")
    if need == "encoder_embeddings":
        return (f"{who} uses the embed representation ('{need}'), which needs an encoder: select with {run} and "
                "embed_encoder set to a local encoder folder")
    return f"{who} needs the '{need}' artifact, which `select` cannot compute: select with {run}"


@dataclass
class Ranking:
    """A selector's answer: pool ``ids`` best first, their ``scores`` (None for an unscored order)
    and whatever the method reports (``diagnostics``, written to the selection's diagnostics.json)."""

    ids: list[str]
    scores: list[float] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)


class Selector(Protocol):
    """A selection method: all that the run loop, the pipeline and ``instruct-select select`` ask of it.

    Everything method-specific (its artifacts, its own settings, the models it loads, the label of
    its arms) reaches the run through these attributes and hooks, never through the method's name.
    ``BaseSelector`` implements every hook's default.
    """

    name: str
    """The method's name in configs, folder names and tables (``random``, ``bids``, ``bids:rds+``)."""
    needs: tuple[str, ...]
    """The artifacts ``rank`` reads (keys of ``SelectionContext.artifacts``), each made by the
    producer of that name (``run/producers``): only these are computed."""
    description: str
    """One line for ``instruct-select methods``."""
    ignores_budget: bool
    """True for a method that takes the whole pool whatever the budget (``full``): its selection
    is recorded with budget "all" and made once per run, not once per budget."""
    scores_against_validation: bool
    """True when ``rank`` scores the pool against the validation set: the run then needs
    ``validation`` and reads its tasks for ``check_validation`` before any work."""

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        """Pool ids best first, at least the ``limit`` (a count of examples) the budget may keep
        when the pool allows; the budget then keeps a prefix (``select.selection.run_selector``)."""
        ...

    def check_validation(self, tasks: list[str], options: dict[str, Any]) -> None:
        """Refuse, before any work, a validation set the method cannot use. ``tasks``: the task of
        each validation example, in file order; ``options``: the run's ``selection_options``.
        Returns nothing; raises ``InputError`` naming the problem."""
        ...

    def options(self, config: RunConfig) -> dict[str, Any]:
        """The selection options the method's own settings in ``config`` give (e.g. learning
        percentage's variant and clusters), merged over ``config.selection_options`` for ``rank``."""
        ...

    def models(self, config: RunConfig) -> dict[str, str]:
        """The models beyond ``config.model`` the method loads: {the setting that names it (e.g.
        "ifd_model"): a model folder or hub id}, only those set. The run checks each as a model
        with its tokenizer, and that the run folder lies apart from it, before any work."""
        ...

    def encoders(self, config: RunConfig) -> dict[str, str]:
        """The local encoder folders the method loads (nothing is downloaded): {the setting that
        names it: the folder}, only those set; checked as encoder folders before any work."""
        ...

    def selected_by(self, config: RunConfig) -> str:
        """The label of the model that selects for this method in ``config`` ("" for none, or the
        run's own model): it names the arm's folder (``-by-LABEL``) and its table row."""
        ...


class BaseSelector:
    """The defaults of every ``Selector`` hook: a method that ignores no budget, checks nothing in
    the validation set, and has no options, models, encoders or selection-model label of its own.
    A selector subclasses it and sets ``name``, ``needs``, ``description`` and ``rank``."""

    name: str = ""
    needs: tuple[str, ...] = ()
    description: str = ""
    ignores_budget: bool = False

    @property
    def scores_against_validation(self) -> bool:
        """True when one of ``needs`` is scored against the validation set (``VALIDATION_NEEDS``)."""
        return bool(set(self.needs) & VALIDATION_NEEDS)

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        """See ``Selector.rank``; every selector defines its own."""
        raise NotImplementedError(f"{type(self).__name__} defines no rank")

    def check_validation(self, tasks: list[str], options: dict[str, Any]) -> None:
        """Accept any validation set (``Selector.check_validation``)."""

    def options(self, config: RunConfig) -> dict[str, Any]:
        """No options of the method's own: {} (``Selector.options``)."""
        return {}

    def models(self, config: RunConfig) -> dict[str, str]:
        """No model beyond the run's own: {} (``Selector.models``)."""
        return {}

    def encoders(self, config: RunConfig) -> dict[str, str]:
        """No encoder folder: {} (``Selector.encoders``)."""
        return {}

    def selected_by(self, config: RunConfig) -> str:
        """The run's own model selects: "" (``Selector.selected_by``)."""
        return ""
