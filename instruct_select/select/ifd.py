"""IFD (Li et al. 2023, Cherry LLM; Superfiltering, Li et al. 2024): the highest instruction-following
difficulty below 1.

IFD = loss(response | instruction) / loss(response alone) (``features/ifd.py``). A high IFD means the
instruction helps little with the response: the example is hard to follow, so worth training on.
IFD >= 1 means the instruction does not help at all, or hurts: the papers read that as a response
that does not match its instruction and drop it (tianyi-lab/Superfiltering ``code_ifd/select_data.py``
keeps IFD < 1; tianyi-lab/Cherry_LLM ``cherry_seletion/data_by_IFD.py`` drops IFD > 1). Here:
the examples with IFD < 1, highest first (ties: the lower row of the artifact), top B. Examples
with IFD >= 1, or with no IFD (no response token left after truncation), are never selected.

Fewer than B examples below 1: an error that says how many there are. The reference scripts then
return fewer than asked (Superfiltering) or take a fraction of those below 1 (Cherry_LLM); a
selection silently smaller than its budget would make the comparison with other methods unfair, so
it stops instead. (A token budget counts as the most examples it could hold.)

The papers rank by the ratio of losses (Cherry_LLM) or of perplexities (Superfiltering, ``ifd_ppl``
= exp(conditioned − alone)); both keep the same examples below 1, but order them differently. This
method ranks by the ratio of losses, the definition both papers give.
"""
from __future__ import annotations

import numpy as np

from ..config import RunConfig
from ..errors import ArtifactMismatchError, InputError
from .base import BaseSelector, Ranking, SelectionContext


def ifd_ranking(ifd: np.ndarray) -> np.ndarray:
    """The rows of ``ifd`` (one IFD per pool example, NaN for none) with IFD < 1, highest IFD first,
    ties to the lower row; NaN rows never. Returns the row indices, int64."""
    eligible = np.flatnonzero(np.nan_to_num(ifd, nan=np.inf) < 1)
    return eligible[np.argsort(-ifd[eligible], kind="stable")]


class IfdSelector(BaseSelector):
    """``ifd``: the pool's IFD scores (the ``ifd_losses`` artifact, computed by ``ifd_model`` or
    else the run's own model), highest below 1 first."""

    name = "ifd"
    needs = ("ifd_losses",)
    description = "IFD (Cherry LLM / Superfiltering): loss of the response with / without its prompt; highest below 1"

    def models(self, config: RunConfig) -> dict[str, str]:
        """The model that scores IFD when it is not the run's own: {"ifd_model": its folder or hub id}."""
        return {"ifd_model": config.ifd_model} if config.ifd_model else {}

    def rank(self, selection: SelectionContext, limit: int) -> Ranking:
        """The ``limit`` pool ids with the highest IFD below 1, with their IFD as scores; refused when
        fewer than ``limit`` examples have IFD < 1 (module docstring)."""
        losses = selection.need("ifd_losses")  # features.ifd.IfdLosses
        if set(losses.ids) != {e.id for e in selection.pool}:
            raise ArtifactMismatchError("the IFD losses were computed for another pool; recompute them")
        ifd = losses.ifd
        order = ifd_ranking(ifd)
        undefined = int(np.isnan(ifd).sum())
        counts = {"below_1": len(order), "at_least_1": len(ifd) - undefined - len(order), "undefined": undefined}
        if len(order) < limit:
            raise InputError(
                f"ifd: only {len(order)} of the {len(ifd)} pool examples have IFD < 1 ({counts['at_least_1']} have "
                f"IFD >= 1, {undefined} no IFD: no response token left after truncation), fewer than the {limit} the "
                f"budget asks for; IFD selects only below 1, so ask for at most {len(order)} examples")
        order = order[:limit]
        return Ranking([losses.ids[i] for i in order], [float(ifd[i]) for i in order], {"ifd": counts})
