"""How the toolkit reports what it does: standard ``logging``, progress bars only on a terminal.

Library code never prints and takes no ``log`` or ``progress`` parameter. Each module logs through
``logging.getLogger(__name__)`` (every logger sits under ``instruct_select``), and wraps its long
loops in :func:`progress_bar`. The command line calls :func:`configure` once: INFO lines go to
stderr as plain messages, so a CI log or a ``nohup`` run shows every stage as it starts and ends
(:func:`stage_lines`), while bars are drawn only when stderr is a terminal. A program that imports
the library and configures nothing sees nothing but warnings, as ``logging`` intends.
"""
from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

ROOT = "instruct_select"
_HANDLER_NAME = "instruct_select.cli"
T = TypeVar("T")


def configure(level: int = logging.INFO, stream=None) -> None:
    """Send the toolkit's log lines at ``level`` and above to ``stream`` (stderr), once.

    Calling it again replaces its own handler (a new level or stream), never another one's. Without
    ``stream`` the handler writes to whatever ``sys.stderr`` is when a line is logged.
    """
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    # The records still propagate: a program (or pytest's caplog) that configured the root logger
    # sees them too; the command line configures nothing else, so each line is written once.


class _StderrHandler(logging.StreamHandler):
    """A stream handler on the current ``sys.stderr`` (which a test or a redirect may replace)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def bars_enabled() -> bool:
    """Progress bars are drawn when stderr is a terminal and the toolkit's INFO lines are shown."""
    return sys.stderr.isatty() and logging.getLogger(ROOT).isEnabledFor(logging.INFO)


def progress_bar(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it") -> Iterator[T]:
    """``tqdm`` over ``iterable`` (or a manual bar of ``total`` units) that draws only on a terminal
    (:func:`bars_enabled`); elsewhere it iterates silently and ``update`` does nothing visible."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, disable=not bars_enabled())


@contextmanager
def stage_lines(name: str, logger: logging.Logger | None = None) -> Iterator[None]:
    """One INFO line when ``name`` starts and one when it ends, with its wall time in seconds;
    a failure is logged as such (with its time) and re-raised."""
    logger = logger or logging.getLogger(ROOT)
    logger.info("%s ...", name)
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        logger.info("%s failed after %.1f s", name, time.perf_counter() - start)
        raise
    logger.info("%s done in %.1f s", name, time.perf_counter() - start)
