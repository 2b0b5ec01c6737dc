"""``python -m instruct_select``: the same command line as ``instruct-select``."""
import sys

from .cli import main

sys.exit(main())
