"""The command line's handlers: every ``cmd_*`` function, one module per command group.

``cli.py`` only parses; it imports a group's module when one of its commands runs, so ``--help``
loads nothing here but this file, which must stay free of heavy imports.

| module | commands |
|---|---|
| ``lab.py`` | ``demo``, ``lab build`` |
| ``stages.py`` | ``select``, ``train``, ``evaluate``, ``inspect``, ``methods``: one stage at a time |
| ``runs.py`` | ``run``, ``ideal``, ``merge``: a whole config |
| ``experiments.py`` | ``experiment NAME`` |
| ``handoff.py`` | ``report``, ``lm-eval``, ``export`` |
| ``models.py`` | ``models`` |
"""
from __future__ import annotations

LAB_DEMO_METHODS = "random,less,bids,lp-hard,full"
# The real data of `demo --real` and of `experiment real|mixture`: a command-line default, never the library's.
REAL_DATA = "../shared/data/real"
