"""The models subcommand: make a real model available as a local Hugging Face folder.

    instruct-select models smollm2-135m            # prints the folder: MODEL=$(instruct-select models smollm2-135m)
"""
from __future__ import annotations


def cmd_models(args) -> None:
    from ..models.real import prepare_real_model

    # Progress is logged to stderr, so that stdout is the folder alone.
    path = prepare_real_model(args.name, args.out, gguf_file=args.gguf)
    print(path)
