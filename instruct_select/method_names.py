"""How a method is named on the two axes of targeted selection: a selector and a representation.

A grid method is written ``SELECTOR:REPRESENTATION`` (``bids:rds+`` is BIDS's rule over RDS+'s
pooled hidden states). The papers' pairs keep their own names: ``less`` is ``less:less``, ``bids``
is ``bids:less`` and ``rds+`` is ``rds+:rds+``, so those spellings are turned into the plain name
(and select exactly what the plain name selects). The selectors that no paper pairs with one
representation (``round-robin``, ``doubly-greedy``, ``uot``) always name their representation.

Plain strings only: the config and the command line use these names without loading a selector.
"""
from __future__ import annotations

from .errors import ConfigError

SEPARATOR = ":"
# The selector axis (select/grid.py holds their rules) and the representation axis
# (select/representations.py holds how each becomes a similarity matrix).
GRID_SELECTORS = ("less", "bids", "rds+", "round-robin", "doubly-greedy", "uot", "knn-uniform")
REPRESENTATIONS = ("less", "rds+", "embed")
# The paper pairs: a selector written alone scores with its paper's representation.
PAPER_REPRESENTATION = {"less": "less", "bids": "less", "rds+": "rds+"}


def split_method(name: str) -> tuple[str, str | None]:
    """``"bids:rds+"`` -> ("bids", "rds+"); a name without a representation -> (name, None)."""
    selector, sep, representation = str(name).partition(SEPARATOR)
    return selector, (representation if sep else None)


def method_name(method: str, representation: str | None = None) -> str:
    """The canonical name of ``method`` scored with ``representation``.

    ``representation`` applies to a grid selector written alone (``bids`` with ``rds+`` ->
    ``bids:rds+``); a method that names its own representation keeps it; other methods (random,
    ifd, the learning-percentage family, ...) have no similarity matrix and are returned as given.
    A grid selector with its paper's representation is the paper's plain name.
    """
    selector, own = split_method(method)
    if own is None and (not representation or selector not in GRID_SELECTORS):
        return selector
    chosen = own if own is not None else representation
    if selector not in GRID_SELECTORS:
        raise ConfigError(f"{method!r}: only the grid selectors ({', '.join(GRID_SELECTORS)}) take a "
                          f"representation ({', '.join(REPRESENTATIONS)})")
    if chosen not in REPRESENTATIONS:
        raise ConfigError(f"{method!r}: unknown representation {chosen!r}; known: {', '.join(REPRESENTATIONS)}")
    if PAPER_REPRESENTATION.get(selector) == chosen:
        return selector
    return f"{selector}{SEPARATOR}{chosen}"


def with_representation(method: str, representation: str | None) -> str:
    """``method_name`` for one method given one representation explicitly (``select
    --representation``, a caller of ``run_selector``): a method that takes none is refused
    rather than run without it."""
    if representation and split_method(method)[0] not in GRID_SELECTORS:
        raise ConfigError(f"method {method!r} takes no representation (it has no similarity matrix); "
                          f"representations apply to the grid selectors: {', '.join(GRID_SELECTORS)}")
    return method_name(method, representation)


def uses_representation(method: str, representation: str) -> bool:
    """Whether the canonical ``method`` scores with ``representation``."""
    selector, own = split_method(method)
    return (own or PAPER_REPRESENTATION.get(selector)) == representation
