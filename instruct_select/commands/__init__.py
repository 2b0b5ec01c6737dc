"""Subcommand groups of the command line that live outside cli.py, and what they share."""

FORMAT_HELP = ("data format of every file: auto, messages, sharegpt, alpaca, prompt_completion, input_target, "
               "question_answer or sni (default: auto, each file detected on its own, so a folder may mix formats)")


def add_data_arguments(p) -> None:
    """How a pool is read: the same flags wherever one is loaded (inspect, select, train, export)."""
    p.add_argument("--format", default="auto", help=FORMAT_HELP)
    p.add_argument("--columns", default=None, metavar="KEY=FIELD,...",
                   help="read records through a column mapping, LLaMA-Factory's keys: prompt, query, response, "
                   "history, system, or messages (e.g. prompt=instruction,query=input,response=output)")
    p.add_argument("--id-field", default=None, metavar="FIELD",
                   help="the record field holding each example's id (default: 'id' when present, else a content hash)")
    p.add_argument("--skip-invalid", action="store_true", help="count and skip invalid records instead of stopping")
