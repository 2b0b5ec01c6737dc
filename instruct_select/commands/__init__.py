"""Subcommand groups of the command line that live outside cli.py, and what they share."""

FORMAT_HELP = ("data format of every file: auto, messages, sharegpt, alpaca, prompt_completion, input_target, "
               "question_answer or sni (default: auto, each file detected on its own, so a folder may mix formats)")
