"""The models subcommand: make a real model available as a local Hugging Face folder.

    instruct-select models smollm2-135m            # prints the folder: MODEL=$(instruct-select models smollm2-135m)
"""
from __future__ import annotations

import sys


def cmd_models(args) -> None:
    from ..models.real import prepare_real_model

    quiet = getattr(args, "quiet", False)
    # Progress goes to stderr, so that stdout is the folder alone.
    path = prepare_real_model(args.name, args.out, gguf_file=args.gguf,
                              log=(lambda _: None) if quiet else (lambda m: print(m, file=sys.stderr)))
    print(path)
